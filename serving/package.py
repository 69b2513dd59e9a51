"""Package: the champion MLflow version into the BentoML model store, and a Bento around it.

BentoML reads BENTOML_HOME when it is imported, so callers set it first (the CLI does, from
`serving.bentoml_home`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from supplyml.config import Config

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
BENTOFILE = Path(__file__).with_name("bentofile.yaml")
LINEAGE = ("git_commit", "dvc_md5", "data_path", "pipeline_run_id", "config_hash", "optuna_study", "optuna_trial",
           "gx_raw", "gx_panel")


class NoChampionError(RuntimeError):
    pass


def package_champion(cfg: Config, registration: dict) -> str:
    """Import the `champion` version with its lineage as labels, build the Bento; returns the Bento tag."""
    import bentoml
    import mlflow

    from supplyml import registry

    mlflow.set_tracking_uri(cfg.tracking_uri)
    name = cfg.registry.model_name
    champion = registry.champion_version(name)
    if champion is None:
        raise NoChampionError(f"{name} has no champion: version {registration['version']} did not pass the gate "
                              f"({'; '.join(registration['reasons'])}); nothing to package")
    tags = champion.tags
    labels = {k: str(tags[k]) for k in LINEAGE if k in tags}
    metadata = {"model_name": name, "model_version": str(champion.version), "metrics": json.loads(tags["metrics"]),
                "max_horizon": cfg.serving.max_horizon, "num_samples": cfg.inventory.num_sample_paths, **labels}
    model = bentoml.mlflow.import_model(name, f"models:/{name}/{champion.version}",
                                        labels={**labels, "mlflow_version": str(champion.version)},
                                        metadata=metadata)
    spec = yaml.safe_load(BENTOFILE.read_text())
    bento = bentoml.bentos.build(
        spec["service"], name=cfg.serving.bento_name, description=spec["description"],
        labels={**labels, "model": str(model.tag)}, include=spec["include"], python=spec["python"],
        docker=spec["docker"], models=[str(model.tag)],
        build_ctx=str(ROOT))
    log.info("built Bento %s around %s (MLflow %s version %s)", bento.tag, model.tag, name, champion.version)
    return str(bento.tag)


def serve_command(cfg: Config) -> list[str]:
    return ["bentoml", "serve", f"{cfg.serving.bento_name}:latest", "--host", cfg.serving.host,
            "--port", str(cfg.serving.port)]
