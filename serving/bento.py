"""What this Bento serves, read once when the server starts: each family's packaged model (the Bento's
arguments pin its tag), its metadata, how the answers are computed (the Bento's other arguments), the
limits (the config in the Bento, then `SUPPLYML_SET` overrides) and the lineage headers."""

from __future__ import annotations

import os
import shlex

import bentoml
from pydantic import BaseModel, create_model

from supplyml import families
from supplyml.config import load_config

# The config in the Bento, then serve-time overrides in the --set syntax.
CONFIG = load_config(overrides=shlex.split(os.environ.get("SUPPLYML_SET", "")))


class Settings(BaseModel):
    # How /forecast and /replenish answer, pinned at packaging from the config the models were trained under.
    max_horizon: int = CONFIG.serving.max_horizon
    ma_window: int = CONFIG.inventory.ma_window
    replenish_samples: int = CONFIG.inventory.num_sample_paths
    seed: int = CONFIG.seed


def _default_tag(family: families.Family) -> str:
    """serving/package.py pins the exact tags as Bento arguments, so a Bento keeps serving the models it was
    built with even after newer imports; these fallbacks serve an ad-hoc `bentoml serve serving.service:...`:
    the forecaster's latest import, and no optional model ("")."""
    default = f"{family.model_name(CONFIG)}:latest" if family.name == families.FORECASTER else ""
    return os.environ.get(f"SUPPLYML_BENTO_{family.served_as.upper()}", default)


# One `<role>_tag` argument per family (`forecaster_tag`, ...), then the settings.
Args = create_model(
    "Args", __base__=Settings, **{f"{f.served_as}_tag": (str, _default_tag(f)) for f in families.FAMILIES.values()}
)
ARGS = bentoml.use_arguments(Args)
SETTINGS = ARGS.model_dump(include=set(Settings.model_fields))  # how answers are computed
# The packaged model and its metadata, by family name; a family without a model is absent.
MODELS = {
    f.name: bentoml.models.BentoModel(tag) for f in families.FAMILIES.values() if (tag := getattr(ARGS, f"{f.served_as}_tag"))
}
METAS = {name: dict(bentoml.models.get(model.tag).info.metadata) for name, model in MODELS.items()}
# The request schemas and the OpenAPI page state the horizon limit, so a violation is an ordinary field error.
MAX_HORIZON = ARGS.max_horizon
SERVING = CONFIG.serving  # limits and batching
TOKEN = os.environ.get("SUPPLYML_API_TOKEN") or None  # read once, when the server starts; never logged
OPEN_PATHS = {"/livez", "/healthz", "/readyz", "/metrics"}  # probes and scrapers carry no token
TIMEOUT_S = 120  # to the first byte of an answer: 1000 SKUs at 56 days on a full-size network take ~20 s


def model_attribute(family: str) -> str:
    """The service class's attribute holding `family`'s packaged model: the Bento carries the models its
    service class names, and an instance reads the attribute as the model in the store it runs against."""
    return f"{families.get(family).served_as}_model"


def packaged(service, family: str):
    """`family`'s packaged model, as MLflow logged it (its python model), loaded on `service`."""
    return bentoml.mlflow.load_model(getattr(service, model_attribute(family))).unwrap_python_model()


def lineage(meta: dict) -> dict[str, str]:
    """The headers naming the model that answered and the data it learnt from."""
    return {
        "X-Supplyml-Model": str(meta["model_name"]),
        "X-Supplyml-Model-Version": str(meta["model_version"]),
        "X-Supplyml-Data-Md5": str(meta.get("dvc_md5", "unknown")),
    }


# BentoML's adaptive batching for the APIs that answer many SKUs with shared model calls.
BATCHING = (
    {"batchable": True, "max_batch_size": SERVING.max_batch_size, "max_latency_ms": SERVING.max_latency_ms}
    if SERVING.batching
    else {}
)
