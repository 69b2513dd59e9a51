"""MLflow: where runs go, and each model family's model as an MLflow model."""

from __future__ import annotations

import logging
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from supplyml.config import Config

if TYPE_CHECKING:  # each family's model is imported where it is loaded: a step of one family pays for no other
    from supplyml.forecasting import Forecaster

log = logging.getLogger(__name__)


def setup_tracking(cfg: Config) -> str:
    """Point MLflow at the configured store; create the experiment with its artifact location."""
    mlflow.set_tracking_uri(cfg.tracking_uri)
    if mlflow.get_experiment_by_name(cfg.registry.experiment) is None:
        location = cfg.registry.artifact_location
        uri: str | None = location
        if "://" not in location and cfg.tracking_uri.startswith(("http://", "https://")):
            uri = None  # a server keeps artifacts in its own store and proxies them, not on this disk
        elif "://" not in location:  # a local directory: MLflow wants a URI
            Path(location).mkdir(parents=True, exist_ok=True)
            uri = Path(location).resolve().as_uri()
        mlflow.create_experiment(cfg.registry.experiment, artifact_location=uri)
    mlflow.set_experiment(cfg.registry.experiment)
    return cfg.tracking_uri


def _pinned(*distributions: str) -> list[str]:
    """pip requirements of a logged model: the running versions of what it loads with (torch's local
    version label, such as +cpu, dropped), and supplyml itself."""
    return [f"{d}=={version(d).split('+')[0]}" for d in ("torch", "mlflow", "pandas", *distributions)] + ["supplyml"]


class ForecasterModel(PythonModel):
    """Pyfunc face of the Forecaster: rows of `unique_id` in, mean and quantiles per day out.

    Callers that need sample paths (replenishment) unwrap it: `.unwrap_python_model().forecaster`.
    """

    def __init__(self, quantiles: list[float], horizon: int):
        self.quantiles, self.horizon = quantiles, horizon

    def load_context(self, context) -> None:
        from supplyml.forecasting import load

        self.forecaster = load(context.artifacts["forecaster"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", self.horizon))
        skus = model_input["unique_id"].astype(str).tolist()
        return self.forecaster.predict(skus, horizon, self.quantiles)


def log_forecaster(forecaster: Forecaster, cfg: Config) -> str:
    """Log to the active run with a signature; returns the model URI. Requirements are given, not inferred:
    inference would load the model in a subprocess just to list what we already know."""
    example = pd.DataFrame({"unique_id": forecaster.skus[:2]})
    output = forecaster.predict(example["unique_id"].tolist(), 2, cfg.evaluation.quantiles)
    signature = infer_signature(example, output, params={"horizon": cfg.features.horizon})
    with tempfile.TemporaryDirectory() as tmp:
        forecaster.save(tmp)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecasterModel(cfg.evaluation.quantiles, cfg.features.horizon),
            artifacts={"forecaster": tmp},
            signature=signature,
            input_example=example,
            pip_requirements=_pinned("lightning", "lightgbm", "mlforecast", "statsforecast"),
        )
    return info.model_uri


class RecommenderModel(PythonModel):
    """Pyfunc face of a Recommender: rows of `customer_id` in, their top `k` SKUs out (`customer_id, rank,
    sku, score, fallback`). The service unwraps it: `.unwrap_python_model().recommender`."""

    def __init__(self, k: int):
        self.k = k

    def load_context(self, context) -> None:
        from supplyml.recommending import load as load_recommender

        self.recommender = load_recommender(context.artifacts["recommender"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", self.k))
        customers = model_input["customer_id"].astype(str).tolist()
        lists = self.recommender.recommend(customers, k)
        return pd.DataFrame(
            [
                {"customer_id": c, "rank": r, "sku": s, "score": v, "fallback": f or ""}
                for c, lst, f in zip(customers, lists, lists.fallback)
                for r, (s, v) in enumerate(lst, 1)
            ]
        )


def log_recommender(recommender, cfg: Config) -> str:
    """Log a fitted Recommender to the active run with a signature; returns the model URI."""
    model = RecommenderModel(cfg.recommend.k)
    model.recommender = recommender
    example = pd.DataFrame({"customer_id": recommender.customers[:2]})
    signature = infer_signature(example, model.predict(None, example, {"k": 3}), params={"k": cfg.recommend.k})
    with tempfile.TemporaryDirectory() as tmp:
        recommender.save(tmp)
        info = mlflow.pyfunc.log_model(
            name="recommender",
            python_model=RecommenderModel(cfg.recommend.k),
            artifacts={"recommender": tmp},
            signature=signature,
            input_example=example,
            pip_requirements=_pinned("lightning", "scipy"),
        )
    return info.model_uri


class PolicyModel(PythonModel):
    """Pyfunc face of a learned replenishment policy: rows of observations in (`ReplenishmentEnv`'s, in
    units of each series' demand per period), the greedy action out. The service unwraps it for the
    network and the setting it was trained for: `.unwrap_python_model().policy` and `.setting`."""

    def __init__(self, setting: dict):
        self.setting = setting  # algorithm, lead_time, review_period, n_actions

    def load_context(self, context) -> None:
        from supplyml.replenishing.learned import ALGORITHMS

        self.policy = ALGORITHMS[self.setting["algorithm"]].cls.load(context.artifacts["policy"], device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from supplyml.replenishing.learned import act

        return pd.DataFrame({"action": act(self.policy, model_input.to_numpy(dtype="float32"))})


def log_policy(policy, setting: dict, observations: pd.DataFrame) -> str:
    """Log a trained stable-baselines3 policy to the active run with a signature; returns the model URI."""
    model = PolicyModel(setting)
    model.policy = policy
    signature = infer_signature(observations, model.predict(None, observations))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.zip"
        policy.save(path)
        info = mlflow.pyfunc.log_model(
            name="policy",
            python_model=PolicyModel(setting),
            artifacts={"policy": str(path)},
            signature=signature,
            input_example=observations,
            pip_requirements=_pinned("stable-baselines3", "gymnasium"),
        )
    return info.model_uri
