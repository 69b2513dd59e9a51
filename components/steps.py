"""The shared pipeline steps as KFP components; each family's are in `components.<its package>`. Each
body only unpacks KFP inputs and calls one step of `supplyml.steps`.

KFP ships each function's source on its own, so imports live inside the bodies. Data moves between
steps only as artifacts; small facts (lineage, params, metrics) move as JSON strings.
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output


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
