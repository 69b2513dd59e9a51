"""The recommender's pipeline steps as KFP components, and its branch of the training pipeline.

KFP ships each component function's source on its own (its annotations read as KFP types, hence no
postponed annotations here), so its imports live inside its body.
"""

from typing import TYPE_CHECKING, NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from supplyml.families import FAMILIES

if TYPE_CHECKING:
    from pipelines.wiring import Branch, Wiring
    from supplyml.config import Config

FAMILY = "recommend"
OUTPUTS = (FAMILIES[FAMILY].output,)  # the pipeline outputs its branch adds, by name


def interactions(config_json: str, lineage: str, raw: Input[Dataset], purchases: Output[Dataset], items: Output[Dataset]) -> str:
    import json

    from supplyml.config import Config
    from supplyml.recommending import steps

    summary = steps.interactions(Config.from_json(config_json), raw.path, purchases.path, items.path)
    purchases.metadata.update(summary)
    return json.dumps({**json.loads(lineage), "customers": summary["customers"]})


def recommend_train(
    config_json: str, lineage: str, best: str, purchases: Input[Dataset], items: Input[Dataset], model: Output[Model]
) -> str:
    import json

    from supplyml.config import Config
    from supplyml.recommending import steps

    return steps.train(
        Config.from_json(config_json), purchases.path, items.path, json.loads(best), json.loads(lineage), model.path
    )


def recommend_evaluate(
    config_json: str,
    run_id: str,
    purchases: Input[Dataset],
    items: Input[Dataset],
    raw: Input[Dataset],
    panel: Input[Dataset],
    model: Input[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> str:
    import json

    from supplyml.config import Config
    from supplyml.recommending import steps

    result = steps.evaluate(
        Config.from_json(config_json), purchases.path, items.path, raw.path, panel.path, model.path, run_id, report.path
    )
    for name, row in result["metrics"].items():
        for metric, value in row.items():
            metrics.log_metric(f"{name}.{metric}", value)
    return json.dumps(result)


def recommend_register(
    config_json: str, run_id: str, evaluation: str, purchases: Input[Dataset], items: Input[Dataset]
) -> NamedTuple("Registered", registration=str, promoted=str):
    import json
    from typing import NamedTuple

    from supplyml.config import Config
    from supplyml.recommending import steps

    result = steps.register(Config.from_json(config_json), purchases.path, items.path, run_id, json.loads(evaluation))
    return NamedTuple("Registered", registration=str, promoted=str)(json.dumps(result), str(result["promoted"]).lower())


SWITCH = "recommend"  # the `pipeline.*` flag that turns its branch on


def unavailable(cfg: "Config") -> "str | None":
    """Why this data can have no recommender branch (a daily panel, order lines without customers), or None."""
    return cfg.no_customers()


def branch(w: "Wiring") -> "Branch":
    """The same gated order lines as purchases, tuned, judged on the test window, registered."""
    from pipelines.wiring import Branch

    interactions_op, train_op, evaluate_op, register_op = map(
        w.component, [interactions, recommend_train, recommend_evaluate, recommend_register]
    )
    raw = w.raw.outputs["raw"]
    bought = interactions_op(config_json=w.config_json, lineage=w.checked.outputs["Output"], raw=raw)
    lineage, purchases, items = bought.outputs["Output"], bought.outputs["purchases"], bought.outputs["items"]
    tuning = w.tuned(lineage, FAMILY, purchases)
    fitted = w.gpu(train_op(config_json=w.config_json, lineage=lineage, best=tuning[-1].output, purchases=purchases, items=items))
    scored = evaluate_op(
        config_json=w.config_json,
        run_id=fitted.outputs["Output"],
        purchases=purchases,
        items=items,
        raw=raw,
        panel=w.panel.outputs["panel"],
        model=fitted.outputs["model"],
    )
    registered = register_op(
        config_json=w.config_json,
        run_id=fitted.outputs["Output"],
        evaluation=scored.outputs["Output"],
        purchases=purchases,
        items=items,
    )
    w.mlflow_login(*tuning, fitted, scored, registered)
    return Branch(registered, {FAMILIES[FAMILY].output: registered.outputs["registration"]})
