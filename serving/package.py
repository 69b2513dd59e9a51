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

from supplyml import families
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


def package(cfg: Config, champions: dict) -> str:
    """Import each family's version in `champions` (family name -> registered MLflow model version; the
    forecaster's is required) into the BentoML model store and build their Bento; returns the Bento tag.
    Lineage labels come from the forecaster's version tags."""
    bentoml = _bentoml(cfg)
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)  # `models:/` URIs resolve through the tracking server
    forecaster = champions[families.FORECASTER]
    lineage = {k: str(forecaster.tags[k]) for k in LINEAGE if k in forecaster.tags}
    # What /forecast and /replenish decide with, pinned from the config the versions were trained under.
    args: dict = {
        "max_horizon": cfg.serving.max_horizon,
        "ma_window": cfg.inventory.ma_window,
        "replenish_samples": cfg.inventory.num_sample_paths,
        "seed": cfg.seed,
    }
    labels = {}
    for family in families.FAMILIES.values():
        role, v = family.served_as, champions.get(family.name)
        labels[f"mlflow_{role}"] = "none"
        if v is None:
            continue
        own = {k: str(v.tags[k]) for k in LINEAGE if k in v.tags}
        imported = bentoml.mlflow.import_model(
            v.name,
            f"models:/{v.name}/{v.version}",
            labels={**own, "mlflow_version": str(v.version)},
            metadata={
                **own,
                "model_name": v.name,
                "model_version": str(v.version),
                "metrics": json.loads(v.tags.get("metrics", "{}")),
                **{k: _tag_value(v.tags[k]) for k in family.served_tags if k in v.tags},
            },
        )
        args[f"{role}_tag"] = str(imported.tag)
        labels |= {role: str(imported.tag), f"mlflow_{role}": f"{v.name}/{v.version}"}
    start = time.monotonic()
    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE), build_ctx=str(ROOT), name=cfg.serving.bento_name, reload=True, labels={**lineage, **labels}, args=args
    )  # serving/bento.py reads the arguments: the Bento serves exactly these models
    log.info(
        "built Bento %s around %s in %.1f s",
        bento.tag,
        ", ".join(f"{k[len('mlflow_') :]} {v}" for k, v in labels.items() if k.startswith("mlflow_")),
        time.monotonic() - start,
    )
    return str(bento.tag)


def _tag_value(raw: str):
    """A version tag as the service reads it: JSON where it is JSON (a policy's setting), else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def champion_bento(cfg: Config, build: bool = True) -> str | None:
    """The Bento of every family's champion (the forecaster's is required): reused if one was built from
    them, else built now (or None with build=False)."""
    import mlflow

    from supplyml import registry

    mlflow.set_tracking_uri(cfg.tracking_uri)
    champions = {f.name: v for f in families.FAMILIES.values() if (v := registry.champion_version(f.model_name(cfg))) is not None}
    if families.FORECASTER not in champions:
        raise NoChampionError(
            f"{families.get(families.FORECASTER).model_name(cfg)} has no champion in {cfg.tracking_uri}: run "
            "`supplyml pipeline run` (or `make run`) first, or `supplyml model promote VERSION`"
        )
    wanted = {
        f"mlflow_{f.served_as}": f"{v.name}/{v.version}" if (v := champions.get(f.name)) else "none"
        for f in families.FAMILIES.values()
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
    return package(cfg, champions) if build else None


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
