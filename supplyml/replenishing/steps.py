"""The learned replenishment policy's pipeline steps: train it on the forecaster's paths, judge it on actual
demand, register it."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator

import mlflow
import pandas as pd

from supplyml import families, registry, tracking
from supplyml.config import Config
from supplyml.features import Split, history_days, plan
from supplyml.forecasting import backtest, load
from supplyml.steps import lineage_tags, register_version

log = logging.getLogger(__name__)


def _planned(cfg: Config, panel_in: str) -> tuple[Config, pd.DataFrame, list[pd.Timestamp]]:
    """The config planned for the panel, the panel, and its held-out origins."""
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))
    return cfg, panel, Split.from_panel(panel, cfg.features).origins()


def train(cfg: Config, panel_in: str, model_in: str, lineage: dict, reviews_out: str, best: dict | None = None) -> dict:
    """Train the learned policy on the forecaster's sample paths at the held-out origins' reviews and log it
    to its own run; returns the run id and the logged model's URI. The reviews (actual demand and the paths
    drawn at each) go to `reviews_out`, so evaluate judges on exactly these without drawing them again.
    `best`: the tune steps' best trial (`pipeline.tune_policy`), whose settings replace the algorithm's params."""
    from supplyml.replenishing import lifecycle as policy_lifecycle
    from supplyml.replenishing import real

    tracking.setup_tracking(cfg)
    cfg, panel, starts = _planned(cfg, panel_in)
    tuned = {}
    if best:
        algorithm = cfg.policy.algorithm
        params = {**cfg.policy.params, algorithm: {**cfg.policy.params[algorithm], **best["params"]}}
        cfg = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"params": params})})
        tuned = {"optuna_study": best["study"], "optuna_trial": best["trial"]}
    # One origin at a time, to disk: the paths are the steps' largest array. Evaluate reads them back the
    # same way, and the pooled paths the policy trains on are filled from the file, so held once.
    sizes: list[int] = []
    with open(reviews_out, "wb") as f:
        for r in policy_lifecycle.evidence(cfg, panel, starts, load(model_in)):
            pickle.dump(r, f, protocol=pickle.HIGHEST_PROTOCOL)  # 5 writes arrays without a bytes copy
            if not sizes:
                example = pd.DataFrame(real.environment(r, cfg, cfg.seed).reset()[0][:2]).add_prefix("obs_")
            sizes.append(len(r.ids))
            del r  # before the next origin is drawn, and not held through training
    series = sizes[0]
    pooled = policy_lifecycle.concat(_origins(reviews_out), sum(sizes))
    setting = policy_lifecycle.setting(cfg)
    with mlflow.start_run(run_name="policy", tags=lineage_tags({**lineage, **tuned})) as run:
        mlflow.log_params({**setting, "timesteps": cfg.policy.timesteps, "series": series, "origins": len(starts)})
        mlflow.log_params({f"policy.{k}": v for k, v in cfg.policy.params[cfg.policy.algorithm].items()})
        model = real.fit(pooled, cfg, cfg.seed)
        model_uri = tracking.log_policy(model, setting, example)
    return {"run_id": run.info.run_id, "model_uri": model_uri, "tuned": tuned}


def evaluate(cfg: Config, panel_in: str, reviews_in: str, trained: dict) -> dict:
    """Judge the trained policy on actual demand at the same reviews against the served textbook policy and
    the champion policy (the gate); the tables and verdicts go to its run."""
    from supplyml.replenishing import lifecycle as policy_lifecycle

    tracking.setup_tracking(cfg)
    cfg, _, starts = _planned(cfg, panel_in)
    model = mlflow.pyfunc.load_model(trained["model_uri"]).unwrap_python_model().policy
    verdict, table, rejudged = policy_lifecycle.judge(cfg, _origins(reviews_in), model)
    log.info(
        "policies at %d origins from %s, actual demand\n%s\n%s",
        len(starts),
        starts[0].date(),
        backtest.format_table(table),
        verdict.summary(),
    )
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"{who}.{k}": float(v) for who, row in table.iterrows() for k, v in row.items()})
        mlflow.log_table(table.reset_index(names="policy"), "evaluation/policies.json")
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_dict(rejudged, "evaluation/champion.json")
    return {"verdict": verdict.to_dict(), "rejudged": rejudged, "test_start": str(starts[0].date())}


def _origins(path: str) -> Iterator[backtest.Reviews]:
    """train's reviews, written by this same code, one origin at a time."""
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def register(cfg: Config, trained: dict, evaluation: dict, lineage: dict) -> dict:
    """Register the policy; the gate's verdict decides whether it becomes champion. A champion policy that
    no longer beats the textbook policy on this evidence is retired: /replenish stops deciding with it."""
    from supplyml.replenishing import lifecycle as policy_lifecycle

    tracking.setup_tracking(cfg)
    verdict, rejudged = evaluation["verdict"], evaluation["rejudged"]
    tags = {
        **lineage_tags({**lineage, **trained["tuned"]}),
        "run_id": trained["run_id"],
        policy_lifecycle.SETTING_TAG: json.dumps(policy_lifecycle.setting(cfg)),
        "metrics": json.dumps(verdict["challenger"]),
        "test_start": evaluation["test_start"],
    }
    out = register_version(cfg, cfg.registry.policy_name, trained["model_uri"], verdict, tags)
    if rejudged["retire"] and not out["promoted"]:
        log.warning("champion policy v%s retired: %s", rejudged["version"], "; ".join(rejudged["reasons"]))
        registry.retire_champion(
            cfg.registry.policy_name,
            rejudged["version"],
            by="pipeline",
            why="no longer beats the textbook policy on the held-out origins",
            lock=registry.lock_path(cfg.workdir),
            figures={"evidence": rejudged["evidence"]},
        )
        out.update(champion=None, retired=rejudged["version"], promoted=True)  # the Bento must drop it
    return out


def summary(cfg: Config, outputs: dict) -> str:
    """What `supplyml pipeline run` prints of this family: the learned policy's cost and service against
    the served textbook policy, the registration, and a champion it retired."""
    policy = json.loads(outputs[families.get("policy").output])
    ours = policy["verdict"]["challenger"]
    promoted = policy["promoted"] and policy.get("champion") == policy["version"]
    lines = [
        f"\nLearned replenishment policy ({cfg.policy.algorithm}) at the held-out origins' reviews, actual demand: "
        f"total cost {ours['total_cost']:,.2f} ({ours['cost_vs_textbook']:+.1%} against the served textbook "
        f"policy); cycle service level {ours['cycle_service_level']:.3f}, fill rate {ours['fill_rate']:.3f}",
        f"Registered {policy['name']} version {policy['version']}: "
        + ("promoted to champion: /replenish decides with it by default" if promoted else "not promoted")
        + ".",
        *(f"  - {reason}" for reason in policy["reasons"]),
    ]
    if policy.get("retired"):
        lines.append(
            f"  Champion policy version {policy['retired']} retired: it no longer beats the textbook policy on "
            "these origins, so /replenish stops deciding with it."
        )
    return "\n".join(lines)
