"""The pipeline's steps as plain functions over files: each KFP component calls exactly one of these.

They move data by paths and small JSON-able values, so they run the same under `kfp.local`, on a
cluster, or straight from a test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import planning, registry, tracking
from supplyml import tune as tuning
from supplyml.config import Config
from supplyml.data import data_file, data_version, parse_days, read_table
from supplyml.features import Split, build_panel, history_days, plan, to_daily
from supplyml.forecasting import backtest, lifecycle, load
from supplyml.forecasting.peers import DEFAULT_PEERS
from supplyml.forecasting.search import ForecastSearch
from supplyml.forecasting.selection import candidates
from supplyml.forecasting.train import train_final
from supplyml.recommending import lifecycle as recommend_lifecycle
from supplyml.recommending.interactions import interactions as purchases
from supplyml.recommending.interactions import item_table, purchase_lines
from supplyml.recommending.search import RecommendSearch

log = logging.getLogger(__name__)
POLICY_TAG = "policy"  # a forecaster version's served textbook policy: base_stock or classical


def ingest(cfg: Config, root: str, raw_out: str) -> dict[str, str]:
    """Read the input (order lines or a daily panel) as it is and record which version it is (DVC md5
    inside data/, checked against the file, else the file's own md5; git commit). A DVC-tracked file
    missing from the checkout (a fresh pod) is pulled from the DVC remote, at `data.rev` when set."""
    path = Path(root) / cfg.data.path  # an absolute data.path (--data) stays as it is
    with data_file(path, root, cfg.data.rev) as local:
        version = data_version(path, root, cfg.data.rev, local=local)  # first: an edited file may not parse
        raw = read_table(local, cfg.data)
    raw.to_parquet(raw_out)
    log.info(
        "ingested %d rows of %s (%s; dvc md5 %s, git %s)",
        len(raw),
        version["data_path"],
        cfg.data.format,
        version["dvc_md5"],
        version["git_commit"][:10],
    )
    return version


def validate(cfg: Config, raw_in: str, docs_dir: str) -> dict:
    """Gate the raw input with the suite for `data.format`; raises DataValidationError (naming the
    file, each failed expectation, its column and example rows) to stop the run."""
    # GX takes seconds to import; only the gating steps pay for it.
    from supplyml import validation

    raw = pd.read_parquet(raw_in)
    report = validation.check(validation.validate_raw(raw, cfg.data, docs_dir=docs_dir)).to_dict()  # logs its summary
    days = history_days(
        parse_days(raw[cfg.data.columns.date if cfg.data.format == "transactions" else cfg.data.panel_columns.ds])
    )
    plan(cfg, days)  # below the days the pipeline can work with, the run stops here in one sentence
    return {**report, "days": days}


def featurize(cfg: Config, raw_in: str, panel_out: str, docs_dir: str) -> dict:
    """Daily demand panel `unique_id, ds, y, price, promo, event`, itself gated by the strict panel
    suite before anything trains on it."""
    from supplyml import validation

    raw = pd.read_parquet(raw_in)
    panel = build_panel(to_daily(raw, cfg.data), cfg.features)
    validation.check(validation.validate_panel(panel, docs_dir=docs_dir))  # logs its summary
    panel.to_parquet(panel_out)
    days = history_days(panel["ds"])
    split = Split.from_panel(panel, plan(cfg, days).features)
    return {
        "series": int(panel["unique_id"].nunique()),
        "rows": len(panel),
        "days": days,
        "val_start": str(split.val_start.date()),
        "test_start": str(split.test_start.date()),
        "end": str(split.end.date()),
    }


def _search(cfg: Config, family: str, data_in: str | None, data_md5: str) -> tuning.Search:
    """The family's Optuna search over its training data (`data_in`: the panel or the interactions;
    None only to name the study)."""
    return SEARCHES[family](cfg, None if data_in is None else pd.read_parquet(data_in), data_md5)


def _forecast_search(cfg: Config, panel: pd.DataFrame | None, data_md5: str) -> ForecastSearch:
    fit = None if panel is None else Split.from_panel(panel, cfg.features).fit(panel)
    return ForecastSearch(fit, cfg, data_md5)


def _recommend_search(cfg: Config, frame: pd.DataFrame | None, data_md5: str) -> RecommendSearch:
    # Tuned on the validation days before the first held-out window, which its own split leaves out.
    if frame is None:
        return RecommendSearch(None, cfg, data_md5)
    first = recommend_lifecycle.windows(cfg, frame)[0]
    return RecommendSearch(frame[frame["ds"] <= first.end], cfg, data_md5)


SEARCHES: dict[str, Callable[[Config, pd.DataFrame | None, str], tuning.Search]] = {
    "forecast": _forecast_search,
    "recommend": _recommend_search,
}


def tune_study(cfg: Config, lineage: dict, family: str = "forecast") -> str:
    """Create (or resume) the family's study before any worker starts, and the MLflow run its trials
    nest under; returns that run's id."""
    cfg = plan(cfg, lineage["history_days"])
    tracking.setup_tracking(cfg)
    study = tuning.create(cfg, _search(cfg, family, None, lineage["dvc_md5"]))
    with mlflow.start_run(run_name=f"tune-{family}", tags=_tags({**lineage, "optuna_study": study.study_name})) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_params({"study": study.study_name, "workers": cfg.tune.workers, "n_trials": cfg.tune.n_trials})
    return run.info.run_id


def tune_worker(cfg: Config, data_in: str, lineage: dict, run_id: str, worker: int, family: str = "forecast") -> int:
    """One Optuna worker of the family's study; its trials nest under `run_id`."""
    cfg = plan(cfg, lineage["history_days"])
    tracking.setup_tracking(cfg)
    search = _search(cfg, family, data_in, lineage["dvc_md5"])
    with mlflow.start_run(run_id=run_id):
        return tuning.work(search, cfg, _tags(lineage), worker)


def tune_best(cfg: Config, lineage: dict, run_id: str, family: str = "forecast") -> dict:
    """After the workers: the best hyperparameters, logged on the tune run."""
    cfg = plan(cfg, lineage["history_days"])
    tracking.setup_tracking(cfg)
    search = _search(cfg, family, None, lineage["dvc_md5"])
    study = tuning.finish(cfg, search)
    best = tuning.best_model(study)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        mlflow.log_metric(f"best_{search.metric}", study.best_value)
    return {"params": best, "study": study.study_name, "trial": study.best_trial.number, "value": study.best_value}


def train(cfg: Config, panel_in: str, best: dict, lineage: dict, model_out: str) -> str:
    """Choose, calibrate and fit what to serve on train + validation days; returns the MLflow run id that
    holds it. The selection evidence travels with the model (selection.json) to the gate."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))
    fit = Split.from_panel(panel, cfg.features).fit(panel)
    # The known-future flags the model learnt from: the server refuses the others instead of feeding a
    # network an input it never saw.
    flags = ",".join(f for f in planning.FLAGS if fit[f].any())
    tags = _tags({**lineage, "optuna_study": best["study"], "optuna_trial": best["trial"], "trained_flags": flags})
    with mlflow.start_run(run_name="train", tags=tags) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_params({f"data.{k}": v for k, v in lineage.items()})
        forecaster, evidence = train_final(fit, cfg, best["params"])
        forecaster.save(model_out)
        (Path(model_out) / "selection.json").write_text(json.dumps(evidence, default=float))
    return run.info.run_id


def evaluate_model(cfg: Config, panel_in: str, model_in: str, run_id: str, report_out: str) -> dict:
    """Score the model at the held-out origins against peers, replay the replenishment policies, choose the
    served textbook policy, judge the model against the champion on the same origins (the gate), and write
    the HTML report; everything also goes to the training run. Returns the metric table and the verdicts."""
    from supplyml.replenishing import lifecycle as policy_lifecycle

    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))
    starts = Split.from_panel(panel, cfg.features).origins()
    forecaster = load(model_in)  # fitted on the days before the first origin, re-anchored at each
    peers = candidates(cfg, panel["unique_id"].nunique(), list(DEFAULT_PEERS))
    result = backtest.Backtest.from_origins(
        [backtest.evaluate_origin(panel, s, forecaster.with_history(panel[panel["ds"] < s]), cfg, peers) for s in starts]
    )
    table = result.table()
    log.info(
        "evaluation at %d origins from %s\n%s\n%s",
        len(starts),
        starts[0].date(),
        backtest.format_table(table),
        backtest.format_table(result.inventory),
    )
    decision = policy_lifecycle.textbook(cfg, result.units)
    log.info("served policy: %s\n%s", decision["served"], "\n".join(f"  - {r}" for r in decision["reasons"]))
    verdict = lifecycle.judge(cfg, panel, starts, forecaster, ours=result)
    log.info("%s\n%s", verdict.summary(), backtest.format_table(verdict.table()))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in table.loc[backtest.MODEL].items()})
        mlflow.log_metrics(result.inventory_metrics())
        mlflow.log_metrics(
            {
                f"gate.{who}.{k}": v
                for who, figs in (("challenger", verdict.challenger), ("champion", verdict.champion or {}))
                for k, v in figs.items()
            }
        )
        mlflow.set_tags(
            {
                "gate.promote": str(verdict.promote),
                "gate.champion_version": str(verdict.champion_version),
                "policy.served": decision["served"],
            }
        )
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_dict(decision, "evaluation/policy.json")
        mlflow.log_table(table.reset_index(), "evaluation/metrics.json")
        mlflow.log_table(result.inventory.reset_index(), "evaluation/inventory.json")
        lifecycle.log_evidence(panel)  # what `supplyml model promote` judges this version on later
        report = result.report(
            panel,
            cfg,
            f"supplyml evaluation at {len(starts)} held-out origins",
            lineage=mlflow.get_run(run_id).data.tags,
            gate=(verdict.table(), [*verdict.reasons, *decision["reasons"]]),
        )
        mlflow.log_text(report, "evaluation/report.html")
    Path(report_out).write_text(report)
    return {
        "metrics": {name: row.to_dict() for name, row in table.iterrows()},
        "verdict": verdict.to_dict(),
        "policy": decision,
        "holdout_start": str(starts[0].date()),
        "holdout_origins": ",".join(str(s.date()) for s in starts),
    }


def register(cfg: Config, panel_in: str, model_in: str, run_id: str, evaluation: dict, lineage: dict) -> dict:
    """Log the forecaster (its history through the data's last day) as an MLflow model, register a
    version with lineage and its verdict, and move `champion` to it if the gate said so and the
    champion is still the one it was judged against."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))  # the pyfunc's default horizon is the one trained
    forecaster = load(model_in).with_history(panel)  # serve forecasts from the day after the data ends
    name = cfg.registry.model_name
    verdict = evaluation["verdict"]
    with mlflow.start_run(run_id=run_id):
        model_uri = tracking.log_forecaster(forecaster, cfg)
    tags = {k: v for k, v in mlflow.get_run(run_id).data.tags.items() if not k.startswith(("mlflow.", "gate."))}
    return _register(
        cfg,
        name,
        model_uri,
        verdict,
        {
            **tags,
            "metrics": json.dumps(evaluation["metrics"][backtest.MODEL]),
            "holdout_start": evaluation["holdout_start"],
            "holdout_origins": evaluation["holdout_origins"],
            POLICY_TAG: evaluation["policy"]["served"],
        },
    )


# ---------------------------------------------------------------- the learned replenishment policy


def policy(cfg: Config, panel_in: str, model_in: str, lineage: dict) -> dict:
    """Train the learned policy on the forecaster's sample paths at the held-out origins' reviews, judge it
    there on actual demand against the served textbook policy and the champion policy (the gate), log it
    with its evaluation to its own run, register it. A champion policy that no longer beats the textbook
    policy on this evidence is retired: /replenish stops deciding with it."""
    from supplyml.replenishing import lifecycle as policy_lifecycle
    from supplyml.replenishing import real

    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))
    starts = Split.from_panel(panel, cfg.features).origins()
    reviews = policy_lifecycle.evidence(cfg, panel, starts, load(model_in))
    setting = policy_lifecycle.setting(cfg)
    with mlflow.start_run(run_name="policy", tags=_tags(lineage)) as run:
        mlflow.log_params({**setting, "timesteps": cfg.policy.timesteps, "series": len(reviews[0].ids), "origins": len(starts)})
        model = real.fit(policy_lifecycle.concat(reviews), cfg, cfg.seed)
        verdict, table, rejudged = policy_lifecycle.judge(cfg, reviews, model)
        log.info(
            "policies at %d origins from %s, actual demand\n%s\n%s",
            len(starts),
            starts[0].date(),
            backtest.format_table(table),
            verdict.summary(),
        )
        mlflow.log_metrics({f"{who}.{k}": float(v) for who, row in table.iterrows() for k, v in row.items()})
        mlflow.log_table(table.reset_index(names="policy"), "evaluation/policies.json")
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_dict(rejudged, "evaluation/champion.json")
        example = pd.DataFrame(real.environment(reviews[0], cfg, cfg.seed).reset()[0][:2]).add_prefix("obs_")
        model_uri = tracking.log_policy(model, setting, example)
    tags = {
        **_tags(lineage),
        "run_id": run.info.run_id,
        policy_lifecycle.SETTING_TAG: json.dumps(setting),
        "metrics": json.dumps(verdict.challenger),
        "test_start": str(starts[0].date()),
    }
    out = _register(cfg, cfg.registry.policy_name, model_uri, verdict.to_dict(), tags)
    if rejudged["retire"] and not out["promoted"]:
        log.warning("champion policy v%s retired: %s", rejudged["version"], "; ".join(rejudged["reasons"]))
        registry.retire_champion(
            cfg.registry.policy_name,
            rejudged["version"],
            by="pipeline",
            why="no longer beats the textbook policy on the held-out origins",
            lock=lifecycle.lock_path(cfg),
            figures={"evidence": rejudged["evidence"]},
        )
        out.update(champion=None, retired=rejudged["version"], promoted=True)  # the Bento must drop it
    return out


# ---------------------------------------------------------------- the recommendation family


def interactions(cfg: Config, raw_in: str, frame_out: str, items_out: str) -> dict:
    """Implicit feedback from the gated order lines (customer x SKU x day purchases) and the item table
    (description, median price) the answers show."""
    lines = purchase_lines(pd.read_parquet(raw_in), cfg.data)
    frame = purchases(lines)
    data = recommend_lifecycle.windows(cfg, frame)[-1]  # fails here, naming the dates, if the history is too short
    frame.to_parquet(frame_out)
    item_table(lines).to_parquet(items_out)
    return {
        "interactions": len(frame),
        "customers": int(frame["customer_id"].nunique()),
        "skus": int(frame["sku"].nunique()),
        **data.dates(),
    }


def _descriptions(items_in: str) -> dict[str, str]:
    items = pd.read_parquet(items_in).dropna(subset=["description"])
    return dict(zip(items["sku"], items["description"]))


def recommend_train(cfg: Config, frame_in: str, items_in: str, best: dict, lineage: dict, model_out: str) -> str:
    """The tuned recipe fitted on the days before the test window (what the gate judges); returns its run id."""
    tracking.setup_tracking(cfg)
    data = recommend_lifecycle.split(cfg, pd.read_parquet(frame_in))
    recipe = recommend_lifecycle.recipe(cfg, best["params"])
    tags = _tags({**lineage, "optuna_study": best["study"], "optuna_trial": best["trial"], "family": "recommend"})
    with mlflow.start_run(run_name="train-recommender", tags=tags) as run:
        mlflow.log_params({f"recommender.{k}": v for k, v in recipe["params"].items()})
        mlflow.log_param("recommender", recipe["model"])
        mlflow.log_params({f"data.{k}": v for k, v in lineage.items()})
        model = recommend_lifecycle.fit(recipe, data.fit, _descriptions(items_in))
        model.save(model_out)
        Path(model_out, "recipe.json").write_text(json.dumps(recipe))
    return run.info.run_id


def recommend_evaluate(
    cfg: Config, frame_in: str, items_in: str, raw_in: str, panel_in: str, model_in: str, run_id: str, report_out: str
) -> dict:
    """Test-window metrics of the model and its peers (all, repeat and new items), the gate's verdict
    against the champion, customer RFM and product demand segments, and the HTML report; everything also
    goes to the run."""
    from supplyml import segments
    from supplyml.recommending import load as load_recommender
    from supplyml.recommending.report import render

    tracking.setup_tracking(cfg)
    held_out = recommend_lifecycle.windows(cfg, pd.read_parquet(frame_in))
    data = held_out[-1]
    model = load_recommender(model_in)
    recipe = json.loads(Path(model_in, "recipe.json").read_text())
    table = recommend_lifecycle.peer_table(cfg, data, model)
    verdict = recommend_lifecycle.judge(cfg, held_out, table, recipe, _descriptions(items_in), model)
    log.info(
        "recommendations on %s .. %s\n%s\n%s",
        data.test_start.date(),
        data.end.date(),
        table.filter(like="ndcg@10").to_string(float_format="%.4f"),
        "\n".join(verdict.reasons),
    )
    customers = segments.customer_segments(pd.read_parquet(raw_in), cfg, as_of=data.test_start)
    panel = pd.read_parquet(panel_in)
    products = segments.product_segments(panel[panel["ds"] < data.test_start], cfg)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k.replace('@', '_at_').replace('/', '.')}": float(v) for k, v in table.loc["model"].items()})
        mlflow.set_tags({"gate.promote": str(verdict.promote), "gate.champion_version": str(verdict.champion_version)})
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_table(table.reset_index(), "evaluation/metrics.json")
        report = render(table, verdict, customers, products, data.dates(), mlflow.get_run(run_id).data.tags)
        mlflow.log_text(report, "evaluation/report.html")
    Path(report_out).write_text(report)
    return {
        "metrics": {name: row.to_dict() for name, row in table.iterrows()},
        "verdict": verdict.to_dict(),
        "recipe": recipe,
        "test_start": str(data.test_start.date()),
    }


def recommend_register(cfg: Config, frame_in: str, items_in: str, run_id: str, evaluation: dict) -> dict:
    """The judged recipe refitted on every day (so it knows the latest purchases), logged as an MLflow
    model and registered with its lineage and verdict; `champion` moves to it if the gate said so."""
    tracking.setup_tracking(cfg)
    recipe, verdict = evaluation["recipe"], evaluation["verdict"]
    model = recommend_lifecycle.fit(recipe, pd.read_parquet(frame_in), _descriptions(items_in))
    with mlflow.start_run(run_id=run_id):
        model_uri = tracking.log_recommender(model, cfg)
    tags = {k: v for k, v in mlflow.get_run(run_id).data.tags.items() if not k.startswith(("mlflow.", "gate."))}
    return _register(
        cfg,
        cfg.registry.recommender_name,
        model_uri,
        verdict,
        {
            **tags,
            recommend_lifecycle.RECIPE_TAG: json.dumps(recipe),
            # A subset without customers (no new items in the window) has NaN figures: left out, JSON has no NaN.
            "metrics": json.dumps({k: v for k, v in evaluation["metrics"]["model"].items() if v == v}),
            "test_start": evaluation["test_start"],
        },
    )


def _register(cfg: Config, name: str, model_uri: str, verdict: dict, tags: dict) -> dict:
    """Register a version with `tags`, its verdict and gate reasons; move `champion` to it if the gate
    said so and the champion is still the one it was judged against."""
    version = registry.register(model_uri, name, {**tags, "verdict": json.dumps(verdict), "gate": "; ".join(verdict["reasons"])})
    reasons, promoted = list(verdict["reasons"]), False
    if verdict["promote"]:
        try:
            registry.move_champion(
                name,
                version.version,
                expected=verdict["champion_version"],
                action="promote",
                by="pipeline",
                why="passed the gate",
                lock=lifecycle.lock_path(cfg),
                figures={"challenger": verdict["challenger"], "champion": verdict["champion"]},
            )
            promoted = True
        except registry.RegistryError as e:  # another promotion won the race: this one judged a stale champion
            reasons.append(str(e))
            log.warning("%s", e)
    champion = registry.champion_version(name)
    return {
        "name": name,
        "version": version.version,
        "promoted": promoted,
        "reasons": reasons,
        "champion": champion.version if champion else None,
        "verdict": verdict,
    }


def _tags(lineage: dict) -> dict[str, str]:
    return {k: str(v) for k, v in lineage.items()}
