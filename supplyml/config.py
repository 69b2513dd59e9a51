"""One typed config for the whole stack: YAML defaults plus `--set key=value` overrides."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Literal, get_args

import yaml  # no stubs installed (types-PyYAML)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
OPTUNA_STORAGE_ENV = "SUPPLYML_OPTUNA_STORAGE"  # outranks tune.storage: a cluster sets it from a Secret
M5_QUANTILES = [0.005, 0.025, 0.165, 0.25, 0.5, 0.75, 0.835, 0.975, 0.995]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Columns(Section):
    """Names of the input file's columns, so a new shop needs no code. The optional ones may be null
    (`--set data.columns.invoice=null`) where the export has no such column: without invoices a
    customer's purchases on one day count as one order; without customers there is no recommender."""

    invoice: str | None = "InvoiceNo"
    sku: str = "StockCode"
    description: str | None = "Description"
    quantity: str = "Quantity"
    date: str = "InvoiceDate"
    price: str = "UnitPrice"
    customer: str | None = "CustomerID"
    country: str | None = "Country"
    location: str | None = None  # store or warehouse column: one series per (SKU, location)


class PanelColumns(Section):
    """Names of a daily panel's columns. Optional ones (price onward) are used when the file has them."""

    unique_id: str = "unique_id"
    ds: str = "ds"
    y: str = "y"
    price: str = "price"
    promo: str = "promo"  # 0/1: the series is on promotion that day
    event: str = "event"  # 0/1: a holiday or event day (same for all series, or per series)
    location: str = "location"


class DataConfig(Section):
    path: str = "data/online_retail/online_retail.csv.gz"
    # Git revision whose DVC pointer selects the data (a tag, branch or commit); None: the checkout's own.
    rev: str | None = None
    format: Literal["transactions", "panel"] = "transactions"
    columns: Columns = Columns()
    panel_columns: PanelColumns = PanelColumns()
    # Online Retail's postage, fees, manual adjustments and vouchers are not demand.
    non_product_codes: list[str] = ["POST", "DOT", "C2", "M", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "B"]
    non_product_prefixes: list[str] = ["gift_0001"]
    # The raw file has 5,268 exact duplicate lines (~1%); more than this is a broken export.
    max_duplicate_fraction: float = Field(0.02, ge=0, le=1)
    until: date | None = None  # use demand up to and including this day (e.g. hold back weeks for monitor)


class FeatureConfig(Section):
    min_selling_days: int = Field(60, ge=1)
    max_series: int | None = Field(None, ge=1)  # keep the top-N series by volume (small slices)
    horizon: int = Field(28, ge=1)
    val_days: int = Field(28, ge=1)
    # Held-out origins of `horizon` days after the training cutoff: the gate's evidence (supplyml.gate).
    test_origins: int = Field(3, ge=1)


Architecture = Literal["deepar", "mlp", "transformer", "vae_lstm"]


class ModelConfig(Section):
    architecture: Architecture = "mlp"
    context_length: int = Field(56, ge=7)
    hidden_size: int = Field(256, ge=4)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1)
    max_epochs: int = Field(12, ge=1)
    windows_per_series: int = Field(16, ge=1)  # random training windows drawn per series per epoch
    # Average the weights of the epochs after this fraction of training (SWA): a flatter, steadier
    # optimum; on Online Retail it took 3-origin WRMSSE from 0.941 to 0.933. 1 turns it off.
    swa_start: float = Field(0.5, gt=0, le=1)
    num_samples: int = Field(100, ge=10)  # sample paths behind means and quantiles
    accelerator: str = "auto"


class SearchSpace(Section):
    architecture: list[Architecture] = list(get_args(Architecture))
    # Width per architecture, on its own scale: LSTM units for deepar and vae_lstm, layer width for mlp, token
    # width for the transformer (4 heads at a multiple of 4).
    hidden_size: dict[Architecture, tuple[int, int]] = {
        "deepar": (16, 64),
        "mlp": (64, 512),
        "transformer": (16, 64),
        "vae_lstm": (16, 64),
    }

    @model_validator(mode="after")
    def _width_for_every_architecture(self) -> SearchSpace:
        if missing := set(self.architecture) - set(self.hidden_size):
            raise ValueError(f"hidden_size has no range for {sorted(missing)}")
        return self

    num_layers: tuple[int, int] = (1, 2)
    learning_rate: tuple[float, float] = (1e-3, 1e-2)
    dropout: tuple[float, float] = (0.0, 0.3)
    context_length: list[int] = [28, 56]


class TuneConfig(Section):
    n_trials: int = Field(6, ge=1)
    timeout_s: float = Field(300, gt=0)
    max_epochs: int = Field(3, ge=1)
    storage: str = "sqlite:///{workdir}/optuna.db"  # postgresql+psycopg2://... for workers on several machines
    study_name: str = "supplyml"
    workers: int = Field(1, ge=1)  # Optuna workers on one study: parallel pipeline tasks
    heartbeat_s: int = Field(30, ge=1)  # a worker's trial is alive while it beats this often
    grace_s: int = Field(120, ge=1)  # silent this long: its worker died; the trial is failed and retried
    max_retry: int = Field(2, ge=0)  # retries of a trial whose worker died
    search_space: SearchSpace = SearchSpace()


class SelectionConfig(Section):
    """What the pipeline chooses among on validation origins before its cutoff (forecasting.selection)."""

    # "network" is the Optuna-tuned network; the rest are supplyml.forecasting.statistical.MODELS, LightGBM and
    # the linear regression.
    candidates: list[str] = [
        "network",
        "lightgbm",
        "linear",
        "seasonal_naive",
        "auto_ets",
        "arima",
        "croston",
        "adida",
        "window_average",
    ]
    # A local model that searches its own form refits at every origin, and its fit time grows with series x
    # days: above this many series it sits out of selection and of the evaluate step's peers. AutoETS: 716 s
    # of a 939 s bench on 500 long series; AutoARIMA costs about 30 times as much per series.
    max_series: dict[str, int] = {"auto_ets": 50, "arima": 2}
    origins: int = Field(5, ge=1)  # validation origins, the last one a horizon before the cutoff
    step_days: int = Field(7, ge=1)  # between validation origins
    max_members: int = Field(3, ge=1)  # equal-weight combinations of 2 .. max_members singles compete
    path_correlations: list[float] = [0.0, 0.25, 0.5, 0.75, 0.9]  # copula candidates for sample paths

    @field_validator("path_correlations")
    @classmethod
    def _unit(cls, rhos: list[float]) -> list[float]:
        if not rhos or any(not 0 <= r < 1 for r in rhos):
            raise ValueError("path_correlations must be a non-empty list in [0, 1)")
        return rhos


class EvaluationConfig(Section):
    quantiles: list[float] = M5_QUANTILES
    season_length: int = Field(7, ge=1)
    origins: int = Field(3, ge=1)  # rolling forecast origins in `supplyml bench`, one horizon apart
    report_series: int = Field(4, ge=0)  # plotted in the HTML report: this many top and random series
    # AutoETS's and AutoARIMA's process pools, in-process LightGBM's threads (the cheap models run in one)
    n_jobs: int = Field(2, ge=1)
    # `supplyml bench` peers that sit out of panels with more series: AutoARIMA takes 2.3 s per 374-day series
    # and origin (4.1 s at 730 days), about 1.7 hours over Online Retail's 1,741 series and 3 origins.
    peer_max_series: dict[str, int] = {"arima": 50}

    @field_validator("quantiles")
    @classmethod
    def _in_unit_interval(cls, qs: list[float]) -> list[float]:
        if not qs or any(not 0 < q < 1 for q in qs):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        return sorted(qs)


class ComputeConfig(Section):
    """Where the per-series statistical work runs (supplyml.compute): each step's own process, or a Dask
    cluster through statsforecast's own distributed backend."""

    engine: Literal["local", "dask"] = "local"
    # A running Dask scheduler (tcp://host:8786), as on Kubernetes (k8s/base/dask.yaml); empty: each step
    # starts a local cluster of `workers` processes for its own run.
    scheduler: str | None = None
    workers: int = Field(2, ge=1)
    partitions: int | None = Field(None, ge=1)  # of the panel, by series; None: two per worker


class TrackingServerConfig(Section):
    """`supplyml tracking-server`: MLflow with basic auth, proxying artifacts to its own store. The admin
    password and the Flask secret key come from the environment only (supplyml.tracking_server)."""

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    backend_store_uri: str = "sqlite:///{workdir}/mlflow-server/mlflow.db"  # a team: postgresql+psycopg2://...
    artifacts_destination: str = "{workdir}/mlflow-server/artifacts"  # a team: s3://...
    auth_database_uri: str = "sqlite:///{workdir}/mlflow-server/auth.db"  # users and permissions
    admin_username: str = "admin"
    default_permission: Literal["READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"] = "READ"  # of a user on what others made
    # MLflow checks a password with scrypt on every request (0.12 s of CPU each here, three per request), and a
    # pipeline run makes hundreds: a worker trusts a credential it checked for this long. A password changed
    # through another worker's API still works there until then; 0 checks every request.
    auth_cache_ttl_seconds: int = Field(60, ge=0)
    workers: int = Field(2, ge=1)


class RegistryConfig(Section):
    tracking_uri: str = "sqlite:///{workdir}/mlflow.db"  # or http://HOST:PORT of `supplyml tracking-server`
    artifact_location: str = "{workdir}/mlartifacts"  # a local store's artifacts; a server keeps its own
    experiment: str = "supplyml"
    model_name: str = "supplyml-forecaster"
    recommender_name: str = "supplyml-recommender"  # the recommendation family's registered model
    policy_name: str = "supplyml-policy"  # the learned replenishment policy's registered model
    server: TrackingServerConfig = TrackingServerConfig()


class GateConfig(Section):
    """The promotion rule. Absolute bars hold for every candidate; against the champion (and for a
    policy, against the textbook policies) the primary metric must be significantly better on paired
    units of the held-out origins, and no guard significantly worse (supplyml.gate, supplyml.evidence)."""

    max_wrmsse: float = Field(1.5, gt=0)
    # On the held-out origins the chosen model's WRMSSE may not be significantly worse than the best peer's,
    # nor its 95% coverage significantly short of 0.95 - coverage_tolerance.
    must_match_best_peer: bool = True
    # One-sided level of the paired tests: "significantly better" and "significantly worse".
    alpha: float = Field(0.05, gt=0, lt=0.5)
    # Better or worse by more than this fraction of the champion's figure: the same recipe refitted with
    # another seed differs by up to 1.5% in WRMSSE (benchmarks/gate.py, A/A), which is not an improvement.
    margin: float = Field(0.02, ge=0, lt=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)  # of the difference's bootstrap interval
    resamples: int = Field(9999, ge=99)  # sign flips (all of them where fewer) and bootstrap draws per test
    # A policy is served at the target: its cycle service level at most this far below inventory.service_level.
    csl_tolerance: float = Field(0.03, ge=0, le=1)
    # A forecaster's 95% intervals cover at least 0.95 less this on held-out origins (intervals far too narrow
    # set order-up-to levels far too low).
    coverage_tolerance: float = Field(0.03, ge=0, le=1)


class MonitorConfig(Section):
    """When `supplyml monitor` says "retrain" (supplyml.forecasting.monitor)."""

    # Realised WRMSSE on new actuals may exceed the champion's own held-out WRMSSE by this factor.
    max_wrmsse_ratio: float = Field(1.3, gt=0)
    # Drift: p-value below which a series or feature has moved (Evidently's per-column tests) ...
    drift_p_value: float = Field(0.01, gt=0, lt=1)
    # ... and the share of series that may move before the demand as a whole has drifted.
    max_drifted_share: float = Field(0.2, ge=0, le=1)
    # Pooled covariates (price, promo, event, y): drifted at this Wasserstein distance in reference spreads.
    covariate_drift_distance: float = Field(0.1, gt=0)
    retrain_on_covariate_drift: bool = False  # else price/promo/event shifts are reported, not a reason alone
    reference_days: int = Field(56, ge=7)  # the training window's last days that new data is compared with


class InventoryConfig(Section):
    """Replenishment economics. Costs are fractions of each item's price, so one config fits a whole catalogue."""

    num_sample_paths: int = Field(500, ge=50)
    lead_time: int = Field(3, ge=0)  # days from order to receipt
    review_period: int = Field(7, ge=1)  # days between orders
    service_level: float = Field(0.95, gt=0, lt=1)  # target cycle service level
    holding_cost: float = Field(0.001, ge=0)  # per unit per day (0.001 = about 37% of price a year)
    lost_sales_cost: float = Field(0.4, ge=0)  # per unit of demand not met: the margin lost
    # The classical policy: S = (L+R) mu + z sigma sqrt(L+R), mu and sigma of the last ma_window days.
    ma_window: int = Field(28, ge=2)


class SegmentsConfig(Section):
    """K-means segments of customers (RFM) and of products (demand shape), k chosen by silhouette
    (supplyml.segments). The random state is the top-level `seed`."""

    k_range: tuple[int, int] = (2, 8)  # smallest and largest k tried
    n_init: int = Field(10, ge=1)  # k-means restarts per k; the best inertia is kept
    silhouette_sample: int = Field(10_000, ge=10)  # above this many points silhouette is scored on a sample

    @field_validator("k_range")
    @classmethod
    def _k_range(cls, k: tuple[int, int]) -> tuple[int, int]:
        if not 2 <= k[0] <= k[1]:
            raise ValueError("k_range must be (low, high) with 2 <= low <= high")
        return k


class ServingConfig(Section):
    bento_name: str = "supplyml_forecast"
    bentoml_home: str = "{workdir}/bentoml"
    max_horizon: int = Field(56, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    # The rest is read by the server when it starts: the Bento's copy of this file, then SUPPLYML_SET in
    # the server's environment (the --set syntax, e.g. SUPPLYML_SET="serving.batching=false").
    batching: bool = True  # BentoML adaptive batching: concurrent requests share one model call
    max_batch_size: int = Field(32, ge=2)  # requests per batch
    max_latency_ms: int = Field(1000, ge=1)  # a request queued longer than this for a batch gets a 503
    max_skus: int = Field(1000, ge=1)  # SKUs per /forecast; more is a 422
    max_items: int = Field(1000, ge=1)  # items per /replenish; more is a 422
    max_k: int = Field(100, ge=1)  # SKUs per /recommend or /similar answer (`exclude` counts against max_skus)
    max_body_bytes: int = Field(1_048_576, ge=1024)  # a larger request body is a 413
    torch_threads: int = Field(1, ge=1)  # per server worker: concurrent requests, not matmuls, use the cores


class PipelineConfig(Section):
    name: str = "supplyml-train"
    image: str = "ghcr.io/supplyml/supplyml:0.1.0"
    root: str = "{workdir}/kfp"
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_limit: int = Field(1, ge=0)
    kfp_host: str | None = None
    optuna_secret: str | None = "supplyml-optuna-storage"  # Secret whose `url` key tuning tasks read on a cluster
    mlflow_secret: str | None = "supplyml-mlflow-client"  # Secret with the `username` and `password` tasks log in with
    service_account: str = "supplyml-pipeline-runner"  # what KFP runs as (k8s/base/pipeline-runner.yaml)
    recommend: bool = True  # also tune, judge, register and package the recommender (supplyml.recommending)
    policy: bool = True  # also train, judge, register and package the learned replenishment policy (supplyml.replenishing)
    # Tune the learned policy first (tune.n_trials trials of policy.tune_timesteps on policy.tune_lead_time's
    # known instance). Off by default: at the default 300k steps a trial costs minutes, more than the rest of `make run`.
    tune_policy: bool = False


# DeepFM as the bench rows fit it: its own ranking (no fixed habit places, no popularity term), 3 epochs.
_DEEPFM: dict[str, int | float | str] = {
    "architecture": "deepfm",
    "dim": 16,
    "lr": 1e-3,
    "epochs": 3,
    "repeat_slots": 0,
    "popularity_weight": 0.0,
}


class RecommendSearchSpace(Section):
    """What Optuna searches for the served recommender (supplyml.recommending.search)."""

    # On Online Retail a 3-epoch trial takes about 6 s with bpr, 30 s with deepfm (its fields and 3 windows
    # of examples) and minutes with sequence, which is searchable but left out.
    architecture: list[Literal["bpr", "sequence", "deepfm"]] = ["bpr", "deepfm"]
    dim: tuple[int, int] = (32, 128)  # embedding width, log scale
    lr: dict[str, tuple[float, float]] = {"bpr": (3e-3, 3e-2), "sequence": (3e-4, 3e-3), "deepfm": (3e-4, 3e-3)}
    # deepfm only: log-odds added to products the customer never bought, so new products take places that
    # habits with a higher chance would hold (0: the calibrated chances alone decide each customer's places)
    new_item_boost: tuple[float, float] = (0.0, 3.0)
    repeat_slots: tuple[int, int] = (0, 10)  # top places the customer's own most-bought items take
    half_life_days: list[int] = [0, 30, 60, 120, 240]  # recency weight of those purchase days (0: none)
    popularity_weight: tuple[float, float] = (0.0, 2.0)  # recent popularity added to the network's score
    segment_weight: tuple[float, float] = (0.0, 1.0)  # share of that popularity from the customer's RFM segment


class RecommendConfig(Section):
    """Product recommendations from the same order lines (supplyml.recommending): the served model, its
    split, search and gate, and the bench's peers."""

    model: str = "blend"  # the served recommender (a registered Recommender name)
    # Its hyperparameters over the model's own defaults (supplyml.recommending.networks); tuning updates them.
    # The defaults were chosen on the validation days of Online Retail (never its test window).
    params: dict[str, int | float | str] = {
        "architecture": "bpr",
        "dim": 64,
        "lr": 0.01,
        "epochs": 10,
        "batch_size": 1024,
        "repeat_slots": 10,
        "half_life_days": 120,
        "popularity_weight": 1.0,
        "segment_weight": 0.0,
    }
    search_space: RecommendSearchSpace = RecommendSearchSpace()
    report_peers: list[Literal["popularity", "repeat", "item_knn", "ease"]] = ["popularity", "repeat", "item_knn", "ease"]

    @model_validator(mode="after")
    def _configured_recipe_is_in_the_search_space(self) -> RecommendConfig:
        # The configured recipe is the study's first trial: a value outside the space would stop tuning.
        space, p = self.search_space, self.params
        problems = []
        if "architecture" in p and p["architecture"] not in space.architecture:
            problems.append(f"architecture={p['architecture']} is not in search_space.architecture={space.architecture}")
        if "half_life_days" in p and p["half_life_days"] not in space.half_life_days:
            problems.append(f"half_life_days={p['half_life_days']} is not in search_space.half_life_days")
        for key in ("dim", "repeat_slots", "popularity_weight", "segment_weight", "new_item_boost"):
            low, high = getattr(space, key)
            if key in p and not low <= p[key] <= high:
                problems.append(f"{key}={p[key]} is outside search_space.{key}=[{low}, {high}]")
        if problems:
            raise ValueError("recommend.params: " + "; ".join(problems))
        return self

    test_days: int = Field(28, ge=1)  # the data's last days, held out for the bench's test
    val_days: int = Field(28, ge=1)  # the days before them: hyperparameters are chosen here, never on test
    popularity_days: int = Field(28, ge=1)  # window of the popularity peer and of the unknown-customer fallback
    k: int = Field(20, ge=10)  # list length ranked, scored (@10, @20) and stored
    select_metric: str = "ndcg@10/all"  # what the validation grid search maximises
    models: list[str] = ["popularity", "repeat", "item_knn", "ease", "als", "bpr", "network", "blend"]
    # Grids tried on the validation window; every combination of a model's lists; a model absent runs on its defaults.
    grid: dict[str, dict[str, list[int | float | str]]] = {
        "item_knn": {"neighbours": [20, 50, 200]},
        "ease": {"l2": [100.0, 250.0, 500.0, 1000.0]},
        "als": {"factors": [32, 64, 128], "regularization": [0.01, 0.1], "alpha": [1.0]},
        "bpr": {"factors": [32, 64], "learning_rate": [0.01, 0.05]},
    }
    # The served recipe again with some hyperparameters overridden, as extra bench rows (what each part adds).
    ablations: dict[str, dict[str, int | float | str]] = {
        "blend with segments": {"segment_weight": 0.5},
        "blend without recency": {"half_life_days": 0},
        # DeepFM's own list (no fixed habit places, no popularity term), then with new products boosted:
        # the trade-off between all and new items that the boost moves along.
        "deepfm": {**_DEEPFM, "new_item_boost": 0.0},
        "deepfm, new items x e^2": {**_DEEPFM, "new_item_boost": 2.0},
        "deepfm, new items x e^3": {**_DEEPFM, "new_item_boost": 3.0},
    }
    seeds: list[int] = [0, 1, 2]  # stochastic models (ALS, BPR, the networks) run once per seed: mean and std
    num_threads: int = Field(2, ge=1)  # for implicit's ALS/BPR


class PolicySearchSpace(Section):
    """What Optuna searches for a learned policy (supplyml.replenishing.search); the rest stays at `params`."""

    learning_rate: tuple[float, float] = (1e-4, 3e-3)  # log scale
    gamma: list[float] = [0.95, 0.98, 0.99]
    width: list[int] = [64, 128]  # two hidden layers of this width
    n_steps: list[int] = [64, 128, 256]  # PPO: rollout periods per update
    ent_coef: tuple[float, float] = (0.0, 0.01)  # PPO
    exploration_fraction: tuple[float, float] = (0.05, 0.3)  # DQN
    target_update_interval: list[int] = [500, 1000, 2000]  # DQN


class PolicyConfig(Section):
    """Learned replenishment policies (supplyml.replenishing): deep RL from stable-baselines3 over the same
    lost-sales dynamics as the backtest, its bench on Zipkin's instances and on real demand, and its gate."""

    algorithm: Literal["ppo", "dqn"] = "ppo"  # the one the pipeline trains and registers
    # Each algorithm's stable-baselines3 arguments (and `width`); tuning on a known instance updates them.
    params: dict[str, dict[str, int | float]] = {
        "ppo": {"learning_rate": 3e-4, "n_steps": 128, "batch_size": 1024, "gamma": 0.99, "ent_coef": 0.0, "width": 64},
        "dqn": {
            "learning_rate": 5e-4,
            "buffer_size": 200_000,
            "learning_starts": 10_000,
            "batch_size": 256,
            "gamma": 0.99,
            "train_freq": 2,
            "target_update_interval": 1000,
            "exploration_fraction": 0.2,
            "exploration_final_eps": 0.01,
            "width": 64,
        },
    }
    search_space: PolicySearchSpace = PolicySearchSpace()
    timesteps: int = Field(300_000, ge=1000)  # series-reviews of training on the forecaster's sample paths
    n_actions: int = Field(31, ge=2)  # orders of 0, 0.1, .. 3 times a series' typical demand per review period
    # The bench's known instances (Zipkin 2008: Poisson mean 5, h = 1, p = 4; lead times 1, 2, 4; [] skips them).
    known_lead_times: list[int] = [1, 2, 4]
    known_timesteps: int = Field(1_500_000, ge=1000)  # periods of training per seed
    known_envs: int = Field(16, ge=1)  # parallel series of Poisson demand in training
    tune_lead_time: int = Field(2, ge=1)  # the known instance trials are scored on (exact cost, seeds 100+)
    tune_timesteps: int = Field(300_000, ge=1000)  # per trial
    tune_trials: int = Field(6, ge=1)  # the bench's study (the pipeline's has tune.n_trials)
    seeds: list[int] = [0, 1, 2]  # training seeds; the bench reports the mean and a 95% t interval
    eval_periods: int = Field(100_000, ge=100)  # simulated periods per policy, one demand stream for all (CRN)
    real_demand: bool = True  # the bench's second table, on the configured data (`--data` for another)


class Config(Section):
    seed: int = 42
    workdir: str = ".supplyml"  # every local store below defaults to `{workdir}/...`, so --set workdir=DIR moves them all
    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    model: ModelConfig = ModelConfig()
    tune: TuneConfig = TuneConfig()
    selection: SelectionConfig = SelectionConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    compute: ComputeConfig = ComputeConfig()
    registry: RegistryConfig = RegistryConfig()
    gate: GateConfig = GateConfig()
    monitor: MonitorConfig = MonitorConfig()
    inventory: InventoryConfig = InventoryConfig()
    segments: SegmentsConfig = SegmentsConfig()
    serving: ServingConfig = ServingConfig()
    pipeline: PipelineConfig = PipelineConfig()
    recommend: RecommendConfig = RecommendConfig()
    policy: PolicyConfig = PolicyConfig()

    @model_validator(mode="after")
    def _stores_under_workdir(self) -> Config:
        _fill_workdir(self, self.workdir)
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.model_validate_json(text)

    def no_customers(self) -> str | None:
        """Why the data can have no recommender (a daily panel, or order lines without customers), or None."""
        if self.data.format != "transactions":
            return "a daily panel has no customers (recommendations need order lines)"
        if self.data.columns.customer is None:
            return "the order lines have no customer column (data.columns.customer is null)"
        return None

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.registry.tracking_uri

    def resolved(self, root: str | Path) -> Config:
        """The same config with every local path made absolute against `root`, so that steps running
        in other processes (kfp.local tasks, the Bento server) find the same stores."""
        root = Path(root).resolve()

        def path(p: str) -> str:
            return str(root / p) if "://" not in p and not Path(p).is_absolute() else p

        def sqlite(uri: str) -> str:
            prefix = "sqlite:///"
            return prefix + path(uri[len(prefix) :]) if uri.startswith(prefix) else uri

        update = {
            "workdir": path(self.workdir),
            "data": self.data.model_copy(update={"path": path(self.data.path)}),
            "tune": self.tune.model_copy(update={"storage": sqlite(self.tune.storage)}),
            "registry": self.registry.model_copy(
                update={
                    "tracking_uri": sqlite(self.registry.tracking_uri),
                    "artifact_location": path(self.registry.artifact_location),
                    "server": self.registry.server.model_copy(
                        update={
                            "backend_store_uri": sqlite(self.registry.server.backend_store_uri),
                            "artifacts_destination": path(self.registry.server.artifacts_destination),
                            "auth_database_uri": sqlite(self.registry.server.auth_database_uri),
                        }
                    ),
                }
            ),
            "serving": self.serving.model_copy(update={"bentoml_home": path(self.serving.bentoml_home)}),
            "pipeline": self.pipeline.model_copy(update={"root": path(self.pipeline.root)}),
        }
        return self.model_copy(update=update)


def _fill_workdir(section: BaseModel, workdir: str) -> None:
    for name, value in section:
        if isinstance(value, BaseModel):
            _fill_workdir(value, workdir)
        elif isinstance(value, str) and "{workdir}" in value:
            setattr(section, name, value.replace("{workdir}", workdir))


def _merge(base: dict, given: dict) -> dict:
    for key, value in given.items():
        base[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


class ConfigError(ValueError):
    pass


def _parse_override(item: str) -> tuple[list[str], object]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    return key.split("."), yaml.safe_load(raw) if raw else ""


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read YAML, apply dotted overrides, validate; errors name the offending field."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    # The YAML and the overrides land on the defaults, so `recommend.params.epochs=2` changes one entry of
    # a default mapping instead of replacing it. Unvalidated, so `{workdir}` is still to be filled.
    raw = _merge(Config.model_construct().model_dump(mode="json"), given)
    for item in overrides:
        keys, value = _parse_override(item)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        fields = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid config {path}: {fields}") from None
