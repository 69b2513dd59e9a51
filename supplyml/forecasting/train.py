"""Train: choose and fit what to serve (`forecasting.selection`) on train + validation days, tracked in MLflow."""

from __future__ import annotations

import logging
import re

import mlflow
import pandas as pd

from supplyml.config import Config, ModelConfig
from supplyml.forecasting.combination import Combination
from supplyml.forecasting.selection import select

log = logging.getLogger(__name__)


def train_final(panel: pd.DataFrame, cfg: Config, best_params: dict) -> tuple[Combination, dict]:
    """Inside the active MLflow run: the tuned network's params, every candidate's validation scores,
    the choice and its calibration."""
    params = ModelConfig(**{**cfg.model.model_dump(), **best_params})
    mlflow.log_params({f"model.{k}": v for k, v in params.model_dump().items()})
    model, evidence = select(panel, cfg, params)
    mlflow.log_dict(evidence, "selection.json")
    mlflow.log_param("chosen", model.describe())
    mlflow.log_metrics(
        {f"validation.{_key(name)}.{k}": v for name, row in evidence["validation"].items() for k, v in row.items()}
    )
    mlflow.log_metrics({"path_correlation": model.calibration.rho, "order_level": model.calibration.scores["order_level"]})
    return model, evidence


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
