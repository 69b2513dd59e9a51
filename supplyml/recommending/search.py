"""What the recommendation family tunes: the served network's architecture, width and learning rate (and
DeepFM's new-item boost), and the blend's repeat places, recency half-life, popularity weight and segment
share, by NDCG@10 on the validation days (fitted on the days before them; the test window is never seen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import optuna
import pandas as pd

from supplyml.config import Config
from supplyml.recommending.base import recommender
from supplyml.recommending.interactions import catalogue, temporal_split, windows
from supplyml.recommending.scoring import score_window

SEARCHED = (
    "architecture",
    "dim",
    "lr",
    "repeat_slots",
    "half_life_days",
    "popularity_weight",
    "segment_weight",
    "new_item_boost",
)


def served_params(cfg: Config) -> dict:
    """The served recommender's hyperparameters: its defaults, then `recommend.params`."""
    return {
        **recommender(cfg.recommend.model).defaults,
        **cfg.recommend.params,
        "popularity_days": cfg.recommend.popularity_days,
        "seed": cfg.seed,
    }


@dataclass
class RecommendSearch:
    """tune.Search over interactions `frame` (None only to name the study), maximising
    `recommend.select_metric` on the validation days."""

    frame: pd.DataFrame | None
    cfg: Config
    data_md5: str
    family = "recommend"
    direction: ClassVar[Literal["minimize", "maximize"]] = "maximize"
    metric = "val_ndcg_at_10"

    def key(self) -> str:
        rc = self.cfg.recommend
        fixed = {k: v for k, v in served_params(self.cfg).items() if k not in SEARCHED}  # batch size, epochs, seed
        return (
            f"{self.data_md5}|{rc.model}|{rc.test_days}|{rc.val_days}|{self.cfg.features.test_origins}|{rc.k}|"
            f"{rc.select_metric}|"
            f"{sorted(fixed.items())}|{rc.search_space.model_dump_json()}"
        )

    def first_trials(self) -> list[dict]:
        """The configured recipe; then, where the space has DeepFM and the recipe is not one, DeepFM's own
        list (no fixed habit places, no popularity term, no boost), so that validation always weighs the
        two ways of placing habits, not only what random trials happen to draw."""
        p, space = served_params(self.cfg), self.cfg.recommend.search_space
        first = {
            "architecture": p["architecture"],
            "dim": p["dim"],
            f"{p['architecture']}_lr": p["lr"],
            **{k: p[k] for k in ("repeat_slots", "half_life_days", "popularity_weight", "segment_weight")},
        }
        if p["architecture"] == "deepfm":
            return [
                {
                    **first,
                    "new_item_boost": _within(p.get("new_item_boost", 0.0), space.new_item_boost),
                }
            ]
        if "deepfm" not in space.architecture:
            return [first]
        own = {
            "architecture": "deepfm",
            "dim": space.dim[0],
            "deepfm_lr": _within(1e-3, space.lr["deepfm"]),
            "repeat_slots": space.repeat_slots[0],
            "half_life_days": p["half_life_days"],
            "popularity_weight": space.popularity_weight[0],
            "segment_weight": space.segment_weight[0],
            "new_item_boost": space.new_item_boost[0],
        }
        return [first, own]

    def objective(self, trial: optuna.Trial) -> float:
        cfg, space = self.cfg, self.cfg.recommend.search_space
        arch = trial.suggest_categorical("architecture", space.architecture)
        chosen = {
            "architecture": arch,
            "dim": trial.suggest_int("dim", *space.dim, log=True),
            "lr": trial.suggest_float(f"{arch}_lr", *space.lr[arch], log=True),
            "repeat_slots": trial.suggest_int("repeat_slots", *space.repeat_slots),
            "half_life_days": trial.suggest_categorical("half_life_days", space.half_life_days),
            "popularity_weight": trial.suggest_float("popularity_weight", *space.popularity_weight),
            "segment_weight": trial.suggest_float("segment_weight", *space.segment_weight),
        }
        if arch == "deepfm":  # the others have no calibrated chances to weigh
            chosen["new_item_boost"] = trial.suggest_float("new_item_boost", *space.new_item_boost)
        trial.set_user_attr("model", chosen)
        split = temporal_split(self.frame, cfg.recommend.test_days, cfg.recommend.val_days)
        params = {**served_params(cfg), **chosen, "epochs": cfg.tune.max_epochs}
        model = recommender(cfg.recommend.model)(**params).fit(split.train, catalogue(split.train))
        scores, _ = score_window(model, split.train, split.val, cfg.recommend.k)
        trial.set_user_attr("validation", scores)
        return scores[cfg.recommend.select_metric]


def tuning_search(cfg: Config, frame: pd.DataFrame | None, data_md5: str) -> RecommendSearch:
    """The tune steps' search: on the days before the first held-out window, which its own split leaves
    out (None only names the study)."""
    if frame is None:
        return RecommendSearch(None, cfg, data_md5)
    first = windows(cfg, frame)[0]
    return RecommendSearch(frame[frame["ds"] <= first.end], cfg, data_md5)


def _within(value: float, bounds: tuple[float, float]) -> float:
    """`value` moved into [low, high]: a first trial outside the space would stop the study."""
    return min(max(value, bounds[0]), bounds[1])
