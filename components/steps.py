"""One KFP component per pipeline step. Each body only unpacks KFP inputs and calls one step:
`supplyml.steps` (shared) or its family's `steps` module.

KFP ships each function's source on its own, so imports live inside the bodies. Data moves between
steps only as artifacts; small facts (lineage, params, metrics) move as JSON strings.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output


def ingest(config_json: str, root: str, pipeline_run_id: str, raw: Output[Dataset]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    cfg = Config.from_json(config_json)
    version = steps.ingest(cfg, root, raw.path)
    raw.metadata.update(version)
    return json.dumps({**version, "pipeline_run_id": pipeline_run_id, "config_hash": cfg.hash()})


def validate(config_json: str, lineage: str, raw: Input[Dataset], data_docs: Output[HTML]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    report = steps.validate(Config.from_json(config_json), raw.path, data_docs.path)
    return json.dumps(
        {**json.loads(lineage), "gx_raw": f"passed {report['evaluated']} expectations", "history_days": report["days"]}
    )


def featurize(config_json: str, lineage: str, raw: Input[Dataset], panel: Output[Dataset], panel_docs: Output[HTML]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    summary = steps.featurize(Config.from_json(config_json), raw.path, panel.path, panel_docs.path)
    panel.metadata.update(summary)
    return json.dumps({**json.loads(lineage), "gx_panel": "passed", "series": summary["series"], "history_days": summary["days"]})


def tune_study(config_json: str, lineage: str, family: str, study: Output[Artifact]) -> str:
    """The family's study, created once before the workers; returns the MLflow run their trials nest under.
    The workers read it (and the lineage) from `study`'s metadata: kfp.local 2.17 hands a task in a
    ParallelFor the loop item in place of any other task's output parameter, but passes artifacts."""
    import json

    from supplyml import steps
    from supplyml.config import Config

    run_id = steps.tune_study(Config.from_json(config_json), json.loads(lineage), family)
    study.metadata.update({"run_id": run_id, "lineage": lineage})
    open(study.path, "w").write(run_id)  # an artifact has a file; the facts are in its metadata
    return run_id


def tune_worker(config_json: str, family: str, worker: int, study: Input[Artifact], data: Input[Dataset]) -> int:
    import json

    from supplyml import steps
    from supplyml.config import Config

    return steps.tune_worker(
        Config.from_json(config_json), data.path, json.loads(study.metadata["lineage"]), study.metadata["run_id"], worker, family
    )


def tune_best(config_json: str, lineage: str, family: str, run_id: str) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    return json.dumps(steps.tune_best(Config.from_json(config_json), json.loads(lineage), run_id, family))


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


def policy_train(config_json: str, lineage: str, panel: Input[Dataset], model: Input[Model], reviews: Output[Dataset]) -> str:
    import json

    from supplyml.config import Config
    from supplyml.replenishing import steps

    cfg = Config.from_json(config_json)
    return json.dumps(steps.train(cfg, panel.path, model.path, json.loads(lineage), reviews.path))


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


def package(config_json: str) -> str:
    """Runs only when a gate promoted its candidate: build (or reuse) the Bento of the champions."""
    from serving.package import NoChampionError, champion_bento
    from supplyml.config import Config

    try:
        return champion_bento(Config.from_json(config_json))
    except NoChampionError as e:  # a promoted recommender, but no forecaster champion to serve beside it
        return f"none: {e}"


def keep(config_json: str, registration: str) -> str:
    """Runs when the gate said no: the served Bento stays the champion's; say why."""
    import json
    import logging

    from serving.package import NoChampionError, champion_bento
    from supplyml.config import Config

    result = json.loads(registration)
    logging.getLogger("supplyml").warning("version %s was not promoted: %s", result["version"], "; ".join(result["reasons"]))
    try:
        return champion_bento(Config.from_json(config_json), build=False) or "none built"
    except NoChampionError:
        return "none: no champion"
