"""The forecaster's pipeline steps as KFP components, and its branch of the training pipeline.

KFP ships each component function's source on its own (its annotations read as KFP types, hence no
postponed annotations here), so its imports live inside its body.
"""

import json
from typing import TYPE_CHECKING, NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from supplyml.families import FAMILIES

if TYPE_CHECKING:
    from pipelines.wiring import Branch, Wiring
    from supplyml.config import Config

FAMILY = "forecast"
OUTPUTS = ("evaluation", FAMILIES[FAMILY].output)  # the pipeline outputs its branch adds, by name
# The train step's `best` when the recipe has no tuned candidate (statistical models, LightGBM): no study ran.
UNTUNED = {"params": {}, "study": "none", "trial": "none", "value": None}


def train(config_json: str, lineage: str, best: str, panel: Input[Dataset], model: Output[Model]) -> str:
    import json

    from supplyml.config import Config
    from supplyml.forecasting import steps

    return steps.train(Config.from_json(config_json), panel.path, json.loads(best), json.loads(lineage), model.path)


def evaluate(
    config_json: str, run_id: str, panel: Input[Dataset], model: Input[Model], report: Output[HTML], metrics: Output[Metrics]
) -> str:
    import json

    from supplyml.config import Config
    from supplyml.forecasting import steps

    result = steps.evaluate(Config.from_json(config_json), panel.path, model.path, run_id, report.path)
    for name, row in result["metrics"].items():
        for metric, value in row.items():
            metrics.log_metric(f"{name}.{metric}", value)
    return json.dumps(result)


def register(
    config_json: str, lineage: str, run_id: str, evaluation: str, panel: Input[Dataset], model: Input[Model]
) -> NamedTuple("Registered", registration=str, promoted=str):
    import json
    from typing import NamedTuple

    from supplyml.config import Config
    from supplyml.forecasting import steps

    result = steps.register(
        Config.from_json(config_json), panel.path, model.path, run_id, json.loads(evaluation), json.loads(lineage)
    )
    # A string, so `dsl.If` compares it the same way locally and on Kubeflow.
    return NamedTuple("Registered", registration=str, promoted=str)(json.dumps(result), str(result["promoted"]).lower())


SWITCH = None  # no `pipeline.*` flag turns it off: every Bento serves a forecaster


def unavailable(cfg: "Config") -> "str | None":
    """Why this data can have no forecaster branch: never (validation stops data it cannot forecast)."""
    return None


def branch(w: "Wiring") -> "Branch":
    """Tuned when the recipe has a network, trained, judged on the held-out origins, registered."""
    from pipelines.wiring import Branch
    from supplyml.forecasting.search import tunes

    train_op, evaluate_op, register_op = map(w.component, [train, evaluate, register])
    lineage, panel = w.panel.outputs["Output"], w.panel.outputs["panel"]
    tuning = w.tuned(lineage, FAMILY, panel) if tunes(w.cfg) else []
    best = tuning[-1].output if tuning else json.dumps(UNTUNED)
    fitted = w.gpu(train_op(config_json=w.config_json, lineage=lineage, best=best, panel=panel))
    scored = evaluate_op(config_json=w.config_json, run_id=fitted.outputs["Output"], panel=panel, model=fitted.outputs["model"])
    registered = register_op(
        config_json=w.config_json,
        lineage=lineage,
        run_id=fitted.outputs["Output"],
        evaluation=scored.outputs["Output"],
        panel=panel,
        model=fitted.outputs["model"],
    )
    w.mlflow_login(*tuning, fitted, scored, registered)
    outputs = {"evaluation": scored.outputs["Output"], FAMILIES[FAMILY].output: registered.outputs["registration"]}
    return Branch(registered, outputs, {"train": fitted})
