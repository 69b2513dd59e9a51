"""What the forecasting family tunes: the network's architecture and key hyperparameters, by Lightning's
val_loss on the validation days (pruned per epoch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, cast

import optuna
import pandas as pd

from supplyml.config import Architecture, Config, ModelConfig
from supplyml.forecasting.base import TUNED

SEARCHED = ("architecture", "hidden_size", "num_layers", "learning_rate", "dropout", "context_length")


def param_name(field: str, architecture: str) -> str:
    """Optuna's name for a searched model field: width is per architecture (different scales)."""
    return f"{architecture}_{field}" if field == "hidden_size" else field


def suggest(trial: optuna.Trial, cfg: Config) -> dict:
    """Model fields for one trial. Width is searched per architecture, under its own parameter name,
    because an LSTM's units and an MLP layer's width live on different scales."""
    space = cfg.tune.search_space
    # One of space.architecture: Optuna's annotation returns a plain str.
    arch = cast(Architecture, trial.suggest_categorical("architecture", space.architecture))
    width = space.hidden_size[arch]
    return {
        "architecture": arch,
        "hidden_size": trial.suggest_int(param_name("hidden_size", arch), *width, log=True),
        "num_layers": trial.suggest_int("num_layers", *space.num_layers),
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "context_length": trial.suggest_categorical("context_length", space.context_length),
    }


@dataclass
class ForecastSearch:
    """tune.Search over `panel` (train days, then `features.val_days` validation days)."""

    panel: pd.DataFrame
    cfg: Config
    data_md5: str
    family = "forecast"
    direction: ClassVar[Literal["minimize", "maximize"]] = "minimize"
    metric = "val_loss"

    def key(self) -> str:
        return f"{self.data_md5}|{self.cfg.features.model_dump_json()}|{self.cfg.tune.search_space.model_dump_json()}"

    def first_trials(self) -> list[dict]:
        model = self.cfg.model
        return [{param_name(f, model.architecture): getattr(model, f) for f in SEARCHED}]

    def objective(self, trial: optuna.Trial) -> float:
        cfg = self.cfg
        chosen = suggest(trial, cfg)
        trial.set_user_attr("model", chosen)
        # Lightning here, not at the top: naming the study (the pipeline, the tune steps) needs none of it.
        from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

        from supplyml.forecasting.networks import NetworkForecaster

        params = ModelConfig(**{**cfg.model.model_dump(), **chosen, "max_epochs": cfg.tune.max_epochs})
        _, trainer = NetworkForecaster.fit(
            self.panel,
            params,
            cfg.features.horizon,
            cfg.features.val_days,
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_loss")],
            seed=cfg.seed,
        )
        # In the trial's run (`supplyml.tune`), beside the objective: what else the network logged, the
        # VAE-LSTM's ELBO among it.
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in trainer.callback_metrics.items() if k != "val_loss"})
        return float(trainer.callback_metrics["val_loss"])


def tuning_search(cfg: Config, panel: pd.DataFrame | None, data_md5: str) -> ForecastSearch:
    """The tune steps' search: on the fitting days of the pipeline's split (None only names the study)."""
    from supplyml.features import Split

    fit = None if panel is None else Split.from_panel(panel, cfg.features).fit(panel)
    return ForecastSearch(fit, cfg, data_md5)


def tunes(cfg: Config) -> bool:
    """Whether the recipe has a candidate that trains with the tuned hyperparameters: without one there
    is nothing to tune, and the pipeline leaves the tune steps out."""
    return any(name in TUNED for name in cfg.selection.candidates)


def main(argv: list[str] | None = None) -> None:
    """`python -m supplyml.forecasting.search CONFIG_JSON PANEL DATA_MD5 WORKER`: one worker process on the
    shared study, printing how many trials it ran. PANEL holds the days to tune on (train + validation days:
    the pipeline's tune_worker cuts them from the panel first)."""
    import sys

    from supplyml import tune

    config, panel, data_md5, worker = argv or sys.argv[1:]
    cfg = Config.from_json(open(config).read())
    print(tune.work(ForecastSearch(pd.read_parquet(panel), cfg, data_md5), cfg, {}, int(worker)))


if __name__ == "__main__":
    main()
