"""One KFP component per pipeline step. Each body only unpacks KFP inputs and calls `supplyml.steps`.

KFP ships each function's source on its own, so imports live inside the bodies. Data moves between
steps only as artifacts; small facts (lineage, params, metrics) move as JSON strings.
"""
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


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
    return json.dumps({**json.loads(lineage), "gx_raw": f"passed {report['evaluated']} expectations"})


def featurize(config_json: str, lineage: str, raw: Input[Dataset], panel: Output[Dataset],
              panel_docs: Output[HTML]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    summary = steps.featurize(Config.from_json(config_json), raw.path, panel.path, panel_docs.path)
    panel.metadata.update(summary)
    return json.dumps({**json.loads(lineage), "gx_panel": "passed", "series": summary["series"]})


def tune(config_json: str, lineage: str, panel: Input[Dataset]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    return json.dumps(steps.tune(Config.from_json(config_json), panel.path, json.loads(lineage)))


def train(config_json: str, lineage: str, best: str, panel: Input[Dataset], model: Output[Model]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    return steps.train(Config.from_json(config_json), panel.path, json.loads(best), json.loads(lineage), model.path)


def evaluate(config_json: str, run_id: str, panel: Input[Dataset], model: Input[Model], report: Output[HTML],
             metrics: Output[Metrics]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    table = steps.evaluate_model(Config.from_json(config_json), panel.path, model.path, run_id, report.path)
    for name, row in table.items():
        for metric, value in row.items():
            metrics.log_metric(f"{name}.{metric}", value)
    return json.dumps(table)


def register(config_json: str, lineage: str, run_id: str, evaluation: str, panel: Input[Dataset],
             model: Input[Model]) -> str:
    import json

    from supplyml import steps
    from supplyml.config import Config

    result = steps.register(Config.from_json(config_json), panel.path, model.path, run_id,
                            json.loads(evaluation), json.loads(lineage))
    return json.dumps(result)


def package(config_json: str, registration: str) -> str:
    import json

    from serving.package import package_champion
    from supplyml.config import Config

    return package_champion(Config.from_json(config_json), json.loads(registration))
