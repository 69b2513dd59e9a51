"""What this Bento serves, read once when the server starts: the packaged models' tags and how the answers
are computed (the Bento's arguments), the models' metadata, the limits (the config in the Bento, then
`SUPPLYML_SET` overrides) and the lineage headers every answer carries."""

from __future__ import annotations

import os
import shlex

import bentoml
from pydantic import (
    BaseModel,
)

from supplyml import planning
from supplyml.columns import FLAGS
from supplyml.config import load_config

# The config in the Bento, then serve-time overrides in the --set syntax.
CONFIG = load_config(overrides=shlex.split(os.environ.get("SUPPLYML_SET", "")))


class Args(BaseModel):
    # serving/package.py pins the exact tags as Bento arguments, so a Bento keeps serving the models it
    # was built with even after newer imports; the fallbacks serve ad-hoc `bentoml serve serving.service:...`.
    forecaster_tag: str = os.environ.get("SUPPLYML_BENTO_FORECASTER", "supplyml-forecaster:latest")
    recommender_tag: str = os.environ.get("SUPPLYML_BENTO_RECOMMENDER", "")  # "": a Bento without recommendations
    policy_tag: str = os.environ.get("SUPPLYML_BENTO_POLICY", "")  # "": a Bento without a learned policy
    # How /forecast and /replenish answer, pinned at packaging from the config the models were trained under.
    max_horizon: int = CONFIG.serving.max_horizon
    ma_window: int = CONFIG.inventory.ma_window
    replenish_samples: int = CONFIG.inventory.num_sample_paths
    seed: int = CONFIG.seed


ARGS = bentoml.use_arguments(Args)
SETTINGS = ARGS.model_dump(exclude={"forecaster_tag", "recommender_tag", "policy_tag"})  # how answers are computed
MODEL = bentoml.models.BentoModel(ARGS.forecaster_tag)
META = dict(bentoml.models.get(MODEL.tag).info.metadata)
RECOMMENDER = bentoml.models.BentoModel(ARGS.recommender_tag) if ARGS.recommender_tag else None
R_META = dict(bentoml.models.get(RECOMMENDER.tag).info.metadata) if RECOMMENDER else None
POLICY = bentoml.models.BentoModel(ARGS.policy_tag) if ARGS.policy_tag else None
P_META = dict(bentoml.models.get(POLICY.tag).info.metadata) if POLICY else None
TRAINED_FOR = (P_META["policy"]["lead_time"], P_META["policy"]["review_period"]) if P_META else None
# The textbook policy that won on the forecaster's held-out origins decides where the learned one does not.
DEFAULT_POLICY = META.get("policy", planning.BASE_STOCK)  # versions from before the choice: base stock
# The request schemas and the OpenAPI page state the horizon limit, so a violation is an ordinary field error.
MAX_HORIZON = ARGS.max_horizon
SERVING = CONFIG.serving  # limits and batching
TOKEN = os.environ.get("SUPPLYML_API_TOKEN") or None  # read once, when the server starts; never logged
OPEN_PATHS = {"/livez", "/healthz", "/readyz", "/metrics"}  # probes and scrapers carry no token


def _lineage(meta: dict) -> dict[str, str]:
    return {
        "X-Supplyml-Model": str(meta["model_name"]),
        "X-Supplyml-Model-Version": str(meta["model_version"]),
        "X-Supplyml-Data-Md5": str(meta.get("dvc_md5", "unknown")),
    }


LINEAGE = _lineage(META)
RECOMMEND_PATHS = {"/recommend", "/similar"}  # answered by the recommender: its lineage on every answer
R_LINEAGE = _lineage(R_META) if R_META else {}
# /replenish answers name the learned policy too when one is packaged (whether or not it decided).
P_LINEAGE = (
    {"X-Supplyml-Policy": str(P_META["model_name"]), "X-Supplyml-Policy-Version": str(P_META["model_version"])} if P_META else {}
)
# Flags the model learnt from (all, for a Bento packaged before this was recorded).
TRAINED_FLAGS = set(META.get("trained_flags", ",".join(FLAGS)).split(",")) - {""}
COUNTED = {
    "/forecast": ("skus", SERVING.max_skus, "serving.max_skus"),
    "/replenish": ("items", SERVING.max_items, "serving.max_items"),
    "/recommend": ("exclude", SERVING.max_skus, "serving.max_skus"),
}
JSON_PATHS = {*COUNTED, "/similar"}
TIMEOUT_S = 120  # to the first byte of an answer: 1000 SKUs at 56 days on a full-size network take ~20 s
