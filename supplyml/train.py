"""Train: the final forecaster on train + validation days, with best params, tracked in MLflow."""
from __future__ import annotations

import logging

import mlflow
import pandas as pd
from lightning.pytorch.loggers import MLFlowLogger

from supplyml.config import Config, ModelConfig
from supplyml.forecaster import Forecaster

log = logging.getLogger(__name__)


def train_final(panel: pd.DataFrame, cfg: Config, best_params: dict) -> Forecaster:
    """Fit inside the active MLflow run; Lightning's MLflow logger streams the per-epoch loss into it."""
    params = ModelConfig(**{**cfg.model.model_dump(), **best_params})
    mlflow.log_params({f"model.{k}": v for k, v in params.model_dump().items()})
    run = mlflow.active_run()
    logger = MLFlowLogger(experiment_name=cfg.registry.experiment, tracking_uri=cfg.tracking_uri,
                          run_id=run.info.run_id)
    forecaster, trainer = Forecaster.fit(panel, params, cfg.features.horizon, val_days=0, logger=logger,
                                         seed=cfg.seed)
    mlflow.log_metrics({"train_loss": float(trainer.callback_metrics["train_loss"]),
                        "path_correlation": forecaster.path_correlation})
    return forecaster
