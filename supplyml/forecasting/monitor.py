"""Monitoring: is the served champion stale?

`run` takes new actuals (order lines or a panel that go past the champion's history end), gates them
as the pipeline gates its data, and asks two questions:

- realised accuracy: the forecasts the champion would have served from its history end, scored
  against the new days with `metrics.evaluate_forecasts`, as its backtest was;
- drift (Evidently): did each series' daily demand, and the covariates pooled over series, move
  between the champion's last `monitor.reference_days` of history and the new window?

`monitor.*` turns the answers into a verdict, "retrain" or not. report.html and monitor.json go to
the output directory and to an MLflow run named "monitor".
"""

from __future__ import annotations

import html
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import registry, tracking
from supplyml.columns import DAILY_COLUMNS, FLAGS
from supplyml.config import Config, MonitorConfig
from supplyml.data import DataError, data_version
from supplyml.forecasting import Forecaster
from supplyml.forecasting.metrics import evaluate_forecasts
from supplyml.validation import load_panel

log = logging.getLogger(__name__)

# Per series (tens of days a window): two-sample Kolmogorov-Smirnov, so monitor.drift_p_value reads as a
# significance level. Pooled covariates (series x days, tens of thousands of values): at that size a p-value
# flags any shift, so they are judged by effect size, Wasserstein distance in units of the reference's spread
# (Evidently's own default for large samples), against monitor.covariate_drift_distance.
SERIES_TEST = "ks"
COVARIATE_TEST = "wasserstein"
COVARIATES = [c for c in DAILY_COLUMNS if c not in ("unique_id", "ds")]  # every daily column but the keys: y, price, flags
HEADLINE = ["wrmsse", "wspl", "coverage_50", "coverage_95"]
SHOWN = 10  # drifted series named in log lines; the report and monitor.json list them all


class NoChampionError(LookupError):
    """The registry has no `champion` to monitor."""


@dataclass
class Drift:
    """Evidently's per-column drift tests of one pair of frames (reference, new window)."""

    tested: int  # columns tested: those not constant over both windows
    share: float  # share of tested columns that drifted (Evidently's DriftedColumnsCount)
    moved: list[dict] = field(default_factory=list)  # name, score (p-value or distance), means; strongest first
    html: str | None = None  # Evidently's report

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.moved]

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "html"}


def run(cfg: Config, out_dir: str | Path, root: str | Path = ".") -> dict:
    """Monitor the champion on the data at `cfg.data.path`; returns what monitor.json holds (its
    `retrain` and `reasons` are the verdict). Raises NoChampionError, DataError when the data does
    not go past the champion's history, DataValidationError when the GX gate rejects it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracking.setup_tracking(cfg)
    name = cfg.registry.model_name
    version = registry.champion_version(name)
    if version is None:
        raise NoChampionError(f"no champion of {name!r} in {cfg.tracking_uri}: run `supplyml pipeline run` first")
    champion = registry.load_forecaster(name)
    # The champion decides which series are watched, so none is dropped by a fresh top-N or by
    # selling days the new file alone may not have.
    features = cfg.features.model_copy(update={"max_series": None, "min_selling_days": 1})
    panel = load_panel(cfg.model_copy(update={"features": features}), docs_dir=out / "data_docs")
    window = new_window(panel, champion, cfg.features.horizon, cfg.data.path)
    reference = reference_window(champion, window["unique_id"].unique(), cfg.monitor.reference_days)

    backtest = json.loads(version.tags.get("metrics", "{}"))
    if "wrmsse" not in backtest:
        log.warning("champion version %s has no held-out metrics tag; accuracy is reported, not judged", version.version)
    realised = realised_accuracy(champion, window, cfg.evaluation.quantiles)
    demand, covariates = drifts(reference, window, cfg.monitor)
    reasons = retrain_reasons(realised, backtest, demand, covariates, cfg.monitor)
    summary = {
        "model": name,
        "champion_version": str(version.version),
        "history_end": str(champion.last_date.date()),
        "window": {
            "start": str(window["ds"].min().date()),
            "end": str(window["ds"].max().date()),
            "days": int(window["ds"].nunique()),
        },
        "series": int(window["unique_id"].nunique()),
        "champion_series": len(champion.skus),
        "realised": {k: float(v) for k, v in realised.items()},
        "backtest": {k: float(backtest[k]) for k in HEADLINE if k in backtest},
        "wrmsse_ratio": realised["wrmsse"] / backtest["wrmsse"] if "wrmsse" in backtest else None,
        "drift": {
            "series_test": f"{SERIES_TEST} p <= {cfg.monitor.drift_p_value:g}",
            "features_test": f"{COVARIATE_TEST} >= {cfg.monitor.covariate_drift_distance:g}",
            "series": demand.to_dict(),
            "features": covariates.to_dict(),
        },
        "retrain": bool(reasons),
        "reasons": reasons,
    }
    if reasons:
        log.warning("RETRAIN: %s", "; ".join(reasons))
    else:
        log.info("OK: %s", healthy_line(summary))
    return _record(summary, demand, covariates, out, data_version(cfg.data.path, root))


def new_window(panel: pd.DataFrame, champion: Forecaster, horizon: int, source: str) -> pd.DataFrame:
    """The new actuals the champion is judged on: the days after its history end, at most `horizon` of
    them, of the series it knows. A day a series has no row (this file's first sale of it came later)
    is a day without demand, as build_panel counts it."""
    last, end = champion.last_date, panel["ds"].max()
    first = last + pd.Timedelta(days=1)
    if end <= last:
        raise DataError(
            f"{source}: the new data ends {end:%Y-%m-%d}, not after the champion's history end "
            f"{last:%Y-%m-%d}; pass actuals from {first:%Y-%m-%d} on with `supplyml monitor --data PATH`"
        )
    days = pd.date_range(first, min(end, last + pd.Timedelta(days=horizon)))
    rows = panel[panel["ds"].isin(days) & panel["unique_id"].isin(champion.skus)]
    if rows.empty:
        raise DataError(
            f"{source}: none of the champion's {len(champion.skus)} series (e.g. "
            f"{', '.join(champion.skus[:3])}) has actuals after {last:%Y-%m-%d}; check the file "
            "and its column mapping (data.columns, data.panel_columns)"
        )
    grid = pd.MultiIndex.from_product([sorted(rows["unique_id"].unique()), days], names=["unique_id", "ds"])
    window = rows.set_index(["unique_id", "ds"]).reindex(grid)
    window[["y", *FLAGS]] = window[["y", *FLAGS]].fillna(0.0)
    window["price"] = window.groupby(level="unique_id")["price"].bfill()
    log.info(
        "new window %s .. %s: %d days, %d of the champion's %d series",
        days[0].date(),
        days[-1].date(),
        len(days),
        len(grid.levels[0]),
        len(champion.skus),
    )
    return window.reset_index()


def reference_window(champion: Forecaster, ids, days: int) -> pd.DataFrame:
    """The champion's last `days` days of history, of the series in the new window."""
    history = champion.history
    recent = history["ds"] > champion.last_date - pd.Timedelta(days=days)
    return history[recent & history["unique_id"].isin(ids)]


def realised_accuracy(champion: Forecaster, window: pd.DataFrame, quantiles: list[float]) -> dict[str, float]:
    """Forecasts the champion serves from its history end, scored against the new window with the
    metrics (and the function) its backtest used."""
    ids = sorted(window["unique_id"].unique())
    forecast = champion.predict(ids, window["ds"].nunique(), quantiles, future=window)
    return evaluate_forecasts(champion.history, window, forecast, quantiles)


def drifts(reference: pd.DataFrame, window: pd.DataFrame, cfg: MonitorConfig) -> tuple[Drift, Drift]:
    """Drift of each series' daily demand (named per series), and of the covariates pooled over series."""
    pooled = [c for c in COVARIATES if c in reference and c in window]
    covariates = drift(
        reference[pooled].reset_index(drop=True),
        window[pooled].reset_index(drop=True),
        COVARIATE_TEST,
        cfg.covariate_drift_distance,
        cfg.max_drifted_share,
    )
    series = drift(wide(reference), wide(window), SERIES_TEST, cfg.drift_p_value, cfg.max_drifted_share)
    return series, covariates


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Daily demand as days x series, one column per series, so a drift test names the series."""
    return frame.pivot(index="ds", columns="unique_id", values="y").rename_axis(columns=None).reset_index(drop=True)


def drift(reference: pd.DataFrame, current: pd.DataFrame, method: str, threshold: float, drift_share: float) -> Drift:
    """Evidently's drift test `method` of every column of `current` against `reference` (same columns).
    A p-value test ("ks") flags a column at score <= threshold; a distance at score >= threshold."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    # A column constant over both windows cannot have moved; Evidently's widgets would divide by its zero spread.
    columns = [c for c in current if pd.concat([reference[c], current[c]]).nunique() > 1]
    if not columns:
        return Drift(0, 0.0)
    test = {"method": method, "threshold": threshold}
    share = {"columns": columns, "drift_share": drift_share, **test}
    definition = DataDefinition(numerical_columns=columns)
    with warnings.catch_warnings():  # its correlation widgets warn on a series with no spread in one window
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([DataDriftPreset(**share)]).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
        page = snapshot.get_html_str(as_iframe=False)
    # Looked up by equal metrics: the preset computed exactly these.
    score = {c: float(snapshot.context.get_metric_result(ValueDrift(column=c, **test)).value) for c in columns}
    drifted = float(snapshot.context.get_metric_result(DriftedColumnsCount(**share)).share.value)
    p_value = method == SERIES_TEST
    moved = sorted(
        (c for c in columns if (score[c] <= threshold if p_value else score[c] >= threshold)),
        key=lambda c: score[c] if p_value else -score[c],
    )
    return Drift(
        len(columns),
        drifted,
        [
            {
                "name": str(c),
                "score": score[c],
                "reference_mean": float(reference[c].mean()),
                "new_mean": float(current[c].mean()),
            }
            for c in moved
        ],
        page,
    )


def retrain_reasons(realised: dict, backtest: dict, demand: Drift, features: Drift, cfg: MonitorConfig) -> list[str]:
    """Why the champion should be retrained; empty when it is healthy."""
    reasons = []
    if "wrmsse" in backtest and realised["wrmsse"] > cfg.max_wrmsse_ratio * backtest["wrmsse"]:
        reasons.append(
            f"realised WRMSSE {realised['wrmsse']:.3f} > monitor.max_wrmsse_ratio {cfg.max_wrmsse_ratio:g} "
            f"x the champion's held-out {backtest['wrmsse']:.3f}"
        )
    if demand.share > cfg.max_drifted_share:
        reasons.append(
            f"demand drifted in {len(demand.moved)} of {demand.tested} series ({demand.share:.0%} > "
            f"monitor.max_drifted_share {cfg.max_drifted_share:.0%}): {_first(demand.names)}"
        )
    test = f"normed Wasserstein distance >= monitor.covariate_drift_distance {cfg.covariate_drift_distance:g}"
    if "y" in features.names:
        reasons.append(f"demand pooled over series drifted ({test})")
    # Price, promotion and event are inputs the champion conditions on: their shifts are reported, and a
    # reason to retrain when its accuracy suffers (above), or always with monitor.retrain_on_covariate_drift.
    inputs = [n for n in features.names if n != "y"]
    if inputs and cfg.retrain_on_covariate_drift:
        reasons.append(f"covariates drifted: {', '.join(inputs)} ({test})")
    return reasons


def healthy_line(summary: dict) -> str:
    ratio = summary["wrmsse_ratio"]
    accuracy = f"realised WRMSSE {summary['realised']['wrmsse']:.3f}" + (f", {ratio:.2f} x held-out" if ratio is not None else "")
    series = summary["drift"]["series"]
    moved = [m["name"] for m in summary["drift"]["features"]["moved"]]
    return f"{accuracy}; demand drifted in {len(series['moved'])} of {series['tested']} series; covariates " + (
        f"moved: {', '.join(moved)} (reported, accuracy held)" if moved else "stable"
    )


def _first(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _record(summary: dict, demand: Drift, features: Drift, out: Path, lineage: dict) -> dict:
    """Write report.html, monitor.json and Evidently's pages into `out` and log them to a "monitor" run."""
    pages = {"drift_series.html": demand.html, "drift_features.html": features.html}
    tags = {
        **lineage,
        "supplyml.kind": "monitor",
        "model_name": summary["model"],
        "champion_version": summary["champion_version"],
        "verdict": "retrain" if summary["retrain"] else "ok",
    }
    with mlflow.start_run(run_name="monitor", tags=tags) as run:
        summary = {**summary, "mlflow_run_id": run.info.run_id, "data": lineage}
        files = {
            "monitor.json": json.dumps(summary, indent=2),
            "report.html": render(summary, pages),
            **{k: v for k, v in pages.items() if v},
        }
        for name, text in files.items():
            (out / name).write_text(text)
            mlflow.log_artifact(str(out / name), "monitor")
        mlflow.log_metrics(_metrics(summary))
    log.info("wrote %s and monitor.json; MLflow run %s", out / "report.html", run.info.run_id)
    return summary


def _metrics(summary: dict) -> dict[str, float]:
    drifted = summary["drift"]
    metrics = {f"realised_{k}": v for k, v in summary["realised"].items()}
    metrics |= {f"backtest_{k}": v for k, v in summary["backtest"].items()}
    if summary["wrmsse_ratio"] is not None:
        metrics["wrmsse_ratio"] = summary["wrmsse_ratio"]
    return {
        **metrics,
        "drifted_series": len(drifted["series"]["moved"]),
        "drifted_series_share": drifted["series"]["share"],
        "drifted_features": len(drifted["features"]["moved"]),
        "window_days": summary["window"]["days"],
        "retrain": float(summary["retrain"]),
    }


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th:first-child{text-align:left}.retrain{color:#a00}.ok{color:#070}iframe{width:100%;height:900px;border:1px solid #ccc}"
)


def render(summary: dict, pages: dict[str, str | None]) -> str:
    """The headline page: verdict, realised vs held-out accuracy, what moved, and Evidently's pages."""
    esc = html.escape
    w, verdict = summary["window"], "RETRAIN" if summary["retrain"] else "OK"
    reasons = summary["reasons"] or [healthy_line(summary)]
    accuracy = [[m, summary["realised"].get(m), summary["backtest"].get(m)] for m in HEADLINE]
    drifted = summary["drift"]
    parts = [
        f"<h1>supplyml monitor: <span class='{verdict.lower()}'>{verdict}</span></h1>",
        f"<p>{esc(summary['model'])} version {esc(summary['champion_version'])}, history end "
        f"{summary['history_end']}; new window {w['start']} .. {w['end']} ({w['days']} days, {summary['series']} of "
        f"{summary['champion_series']} series). Drift: series {esc(drifted['series_test'])}, covariates "
        f"{esc(drifted['features_test'])}.</p>",
        "<ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>",
        "<h2>Accuracy: realised on the new window vs the champion's held-out backtest</h2>",
        _table(["metric", "realised", "backtest"], accuracy),
    ]
    for key, title in (("series", "Series whose demand moved"), ("features", "Covariates that moved (pooled over series)")):
        d = drifted[key]
        parts.append(f"<h2>{title}: {len(d['moved'])} of {d['tested']} tested</h2>")
        parts.append(
            _table(
                ["name", "score", "mean before", "mean now"],
                [[m["name"], m["score"], m["reference_mean"], m["new_mean"]] for m in d["moved"]],
            )
        )
    for name, page in pages.items():
        if page:
            parts.append(f"<h2>Evidently: <a href='{name}'>{name}</a></h2><iframe src='{name}'></iframe>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>supplyml monitor: {verdict}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
