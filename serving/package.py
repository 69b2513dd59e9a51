"""Package a registered MLflow version as a Bento: the model goes into the BentoML model store with its
lineage, and a Bento is built around it from serving/bentofile.yaml.

BentoML keeps its stores under BENTOML_HOME, which it reads the first time a store is used. Callers
set it from `serving.bentoml_home` before that (`os.environ.update(bentoml_env(cfg))`; the CLI does);
`package` sets it too and refuses to run if this process already uses another home.

bentofile.yaml is the one description of the build: `bentoml build -f serving/bentofile.yaml .` and
`package` build the same Bento; `package` only adds the name, the lineage labels and the pinned model.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from supplyml.config import Config

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
BENTOFILE = Path(__file__).with_name("bentofile.yaml")
# Model-version tags that say where a model came from and what it learnt from; the rest (gate reasons,
# metrics) are not lineage.
LINEAGE = (
    "git_commit",
    "dvc_md5",
    "data_path",
    "pipeline_run_id",
    "config_hash",
    "optuna_study",
    "optuna_trial",
    "gx_raw",
    "gx_panel",
    "trained_flags",
)


class NoChampionError(RuntimeError):
    pass


def bentoml_env(cfg: Config) -> dict[str, str]:
    return {"BENTOML_HOME": str(Path(cfg.serving.bentoml_home).resolve())}


def package(cfg: Config, version: str, lineage: dict, metrics: dict, recommender=None, policy=None) -> str:
    """Import MLflow version `version` of cfg.registry.model_name (and `recommender` and `policy`, registered
    versions of cfg.registry.recommender_name and policy_name, when given) and build their Bento; returns
    the Bento tag."""
    bentoml = _bentoml(cfg)
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)  # `models:/` URIs resolve through the tracking server
    name, version = cfg.registry.model_name, str(version)
    labels = {k: str(v) for k, v in lineage.items()}
    # The textbook policy this version's held-out origins chose (versions from before the choice: base stock).
    default_policy = mlflow.MlflowClient().get_model_version(name, version).tags.get("policy", "base_stock")
    metadata = {
        **labels,
        "model_name": name,
        "model_version": version,
        "metrics": metrics,
        "max_horizon": cfg.serving.max_horizon,
        "default_policy": default_policy,
        "ma_window": cfg.inventory.ma_window,
        "replenish_samples": cfg.inventory.num_sample_paths,
        "seed": cfg.seed,
    }
    model = bentoml.mlflow.import_model(
        name, f"models:/{name}/{version}", labels={**labels, "mlflow_version": version}, metadata=metadata
    )
    args, bento_labels = {"model_tag": str(model.tag)}, {}
    for family, registered, extra in (("recommender", recommender, ()), ("policy", policy, ("policy",))):
        bento_labels[f"mlflow_{family}"] = "none"
        if registered is None:
            continue
        r_name, r_version, tags = registered.name, str(registered.version), registered.tags
        r_labels = {k: str(tags[k]) for k in LINEAGE if k in tags}
        imported = bentoml.mlflow.import_model(
            r_name,
            f"models:/{r_name}/{r_version}",
            labels={**r_labels, "mlflow_version": r_version},
            metadata={
                **r_labels,
                "model_name": r_name,
                "model_version": r_version,
                "metrics": json.loads(tags.get("metrics", "{}")),
                **{k: json.loads(tags[k]) for k in extra},
            },
        )
        args[f"{family}_tag"] = str(imported.tag)
        bento_labels |= {family: str(imported.tag), f"mlflow_{family}": f"{r_name}/{r_version}"}
    start = time.monotonic()
    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE),
        build_ctx=str(ROOT),
        name=cfg.serving.bento_name,
        reload=True,
        labels={**labels, "model": str(model.tag), "mlflow_model": f"{name}/{version}", **bento_labels},
        args=args,
    )  # serving/service.py reads them: the Bento serves exactly these models
    log.info(
        "built Bento %s around %s (MLflow %s version %s; recommender %s; policy %s) in %.1f s",
        bento.tag,
        model.tag,
        name,
        version,
        bento_labels["mlflow_recommender"],
        bento_labels["mlflow_policy"],
        time.monotonic() - start,
    )
    return str(bento.tag)


def champion_bento(cfg: Config, build: bool = True) -> str | None:
    """The Bento of the champions (the forecaster's, and the recommender's and the learned policy's when
    they have one): reused if one was built from them, else built now (or None with build=False). Lineage
    comes from the versions' tags."""
    import mlflow

    from supplyml import registry

    mlflow.set_tracking_uri(cfg.tracking_uri)
    name = cfg.registry.model_name
    champion = registry.champion_version(name)
    if champion is None:
        raise NoChampionError(
            f"{name} has no champion in {cfg.tracking_uri}: run `supplyml pipeline run` (or "
            "`make run`) first, or `supplyml model promote VERSION`"
        )
    recommender = registry.champion_version(cfg.registry.recommender_name)
    policy = registry.champion_version(cfg.registry.policy_name)
    wanted = {
        "mlflow_model": f"{name}/{champion.version}",
        **{
            f"mlflow_{family}": f"{v.name}/{v.version}" if v else "none"
            for family, v in (("recommender", recommender), ("policy", policy))
        },
    }
    bentoml = _bentoml(cfg)
    try:
        built = [
            b
            for b in bentoml.bentos.list(cfg.serving.bento_name)
            if all(b.info.labels.get(k, "none") == v for k, v in wanted.items())
        ]
    except bentoml.exceptions.NotFound:  # no Bento of this name yet
        built = []
    if built:
        return str(max(built, key=lambda b: b.info.creation_time).tag)
    if not build:
        return None
    tags = champion.tags
    return package(
        cfg,
        champion.version,
        {k: tags[k] for k in LINEAGE if k in tags},
        json.loads(tags.get("metrics", "{}")),
        recommender,
        policy,
    )


def serve_command(cfg: Config) -> list[str]:
    """`bentoml serve` of the champion's Bento (built first if a promotion or rollback left it without one)."""
    # The bentoml beside this interpreter: make calls .venv/bin/supplyml without the venv on PATH.
    return [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        champion_bento(cfg),
        "--host",
        cfg.serving.host,
        "--port",
        str(cfg.serving.port),
    ]


def _bentoml(cfg: Config):
    home = bentoml_env(cfg)["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = home
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    in_use = os.path.realpath(BentoMLContainer.bentoml_home.get())
    if in_use != os.path.realpath(home):
        raise RuntimeError(
            f"this process already uses BentoML home {in_use}, not serving.bentoml_home={home}; "
            "set BENTOML_HOME before anything uses bentoml"
        )
    return bentoml
