"""The learned replenishment policy's pipeline steps as KFP components, and its branch of the training
pipeline. It learns on the forecaster's sample paths, so it is wired after the forecaster's branch.

KFP ships each component function's source on its own (its annotations read as KFP types, hence no
postponed annotations here), so its imports live inside its body.
"""

from typing import TYPE_CHECKING, NamedTuple

from kfp.dsl import Dataset, Input, Model, Output

from supplyml.families import FAMILIES, FORECASTER

if TYPE_CHECKING:
    from pipelines.wiring import Branch, Wiring
    from supplyml.config import Config

FAMILY = "policy"
OUTPUTS = (FAMILIES[FAMILY].output,)  # the pipeline outputs its branch adds, by name


def policy_train(
    config_json: str, lineage: str, best: str, panel: Input[Dataset], model: Input[Model], reviews: Output[Dataset]
) -> str:
    import json

    from supplyml.config import Config
    from supplyml.replenishing import steps

    cfg = Config.from_json(config_json)
    return json.dumps(steps.train(cfg, panel.path, model.path, json.loads(lineage), reviews.path, json.loads(best)))


def policy_evaluate(config_json: str, trained: str, panel: Input[Dataset], reviews: Input[Dataset]) -> str:
    import json

    from supplyml.config import Config
    from supplyml.replenishing import steps

    return json.dumps(steps.evaluate(Config.from_json(config_json), panel.path, reviews.path, json.loads(trained)))


def policy_register(config_json: str, lineage: str, trained: str, evaluation: str) -> NamedTuple(
    "Registered", registration=str, promoted=str
):
    import json
    from typing import NamedTuple

    from supplyml.config import Config
    from supplyml.replenishing import steps

    result = steps.register(Config.from_json(config_json), json.loads(trained), json.loads(evaluation), json.loads(lineage))
    return NamedTuple("Registered", registration=str, promoted=str)(json.dumps(result), str(result["promoted"]).lower())


SWITCH = "policy"  # the `pipeline.*` flag that turns its branch on


def unavailable(cfg: "Config") -> "str | None":
    """Why this data can have no learned-policy branch: never (it learns on the forecaster's paths)."""
    return None


def branch(w: "Wiring") -> "Branch":
    """Tuned on a known instance (with `pipeline.tune_policy`), trained on the forecaster's paths over the
    test window (the evaluation's evidence), judged there on actual demand, registered."""
    from pipelines.wiring import Branch

    train_op, evaluate_op, register_op = map(w.component, [policy_train, policy_evaluate, policy_register])
    lineage, panel = w.panel.outputs["Output"], w.panel.outputs["panel"]
    forecaster = w.branches[FORECASTER].tasks["train"]
    best = w.tuned(lineage, FAMILY, panel)[-1].output if w.cfg.pipeline.tune_policy else "{}"
    trained = w.gpu(
        train_op(config_json=w.config_json, lineage=lineage, best=best, panel=panel, model=forecaster.outputs["model"])
    )
    scored = evaluate_op(
        config_json=w.config_json, trained=trained.outputs["Output"], panel=panel, reviews=trained.outputs["reviews"]
    )
    registered = register_op(
        config_json=w.config_json, lineage=lineage, trained=trained.outputs["Output"], evaluation=scored.output
    )
    w.mlflow_login(trained, scored, registered)
    return Branch(registered, {FAMILIES[FAMILY].output: registered.outputs["registration"]})
