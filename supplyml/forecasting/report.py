"""The HTML evaluation report: one self-contained file per pipeline run and per benchmark run.

Self-contained means no network at view time: CSS is inline, figures are PNGs drawn with
matplotlib's Agg canvas and embedded as base64, and there is no JavaScript. Figures use a modest
dpi so a full report stays in the low hundreds of KB. Every piece of caller text (title, notes,
model and policy names, lineage values, series ids) is HTML-escaped.

Sections, in order; each optional one is left out entirely when its input is None:
metrics by model, metrics per forecast origin, forecasts vs actuals, error by demand segment,
inventory simulation (table + cost chart), on-hand inventory, lineage.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import numbers
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from supplyml.forecasting.metrics import evaluate_forecasts, quantile_col

log = logging.getLogger(__name__)

SEGMENTS = ("fast", "slow", "intermittent")
ADI_CUTOFF = 1.32  # Syntetos & Boylan (2005): ADI above this means intermittent or lumpy demand
COUNT_ROW = "n_series"  # the row of error_by_segment that counts series per segment
HISTORY_DAYS = 56  # days of history shown before the forecast in each series panel
DPI = 80
LOWER_IS_BETTER = frozenset({"wrmsse", "mase", "wspl", "rmsse", "spl", "mae", "rmse", "seconds"})
HEADINGS = {
    "metrics": "Metrics by model",
    "per_origin": "Metrics per forecast origin",
    "forecasts": "Forecasts vs actuals",
    "by_segment": "Error by demand segment",
    "inventory": "Inventory simulation",
    "on_hand": "On-hand inventory",
    "calibration": "Calibration: daily values and lead-time + review totals",
    "gate": "Champion vs challenger",
    "lineage": "Lineage",
}
_PANEL = ["unique_id", "ds", "y"]
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}"
    "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:.85em;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "thead th{background:#f3f3f3}tbody th{text-align:left;font-weight:normal}"
    "tr.champion th{font-weight:bold}td.best{background:#d8f0d8;font-weight:bold}"
    "p.note{color:#444;max-width:60em}img{max-width:100%;display:block;margin:.5em 0}"
)


# ---------------------------------------------------------------------------------------------
# Segments and per-segment error


def segments(history: pd.DataFrame, window: int = 91) -> pd.Series:
    """Classify each series as "fast", "slow" or "intermittent" from its last `window` training days.

    Rule (applied to each series' last `window` observed rows of `history`; NaN demand is dropped,
    a series with fewer rows uses the rows it has):
      1. ADI, the average inter-demand interval, is estimated as days / days with demand (y > 0).
         ADI > 1.32 (the Syntetos-Boylan cut-off) means "intermittent"; a series that sold nothing
         in the window has an infinite ADI and is intermittent too.
      2. Among the other series, "fast" when mean daily units is at or above the median of their
         mean daily units, else "slow".
    Returns a Series unique_id -> segment named "segment", sorted by unique_id.
    """
    if window < 1:
        raise ValueError(f"segment window must be >= 1 day, got {window}")
    _require(history, _PANEL, "history")
    obs = history.loc[history["y"].notna(), _PANEL].sort_values(["unique_id", "ds"])
    if obs.empty:
        raise ValueError("history has no observed demand (column y is empty or all NaN); cannot segment series")
    recent = obs.groupby("unique_id", sort=True).tail(window)
    days = recent.groupby("unique_id").size().astype(float)
    demand_days = (recent["y"] > 0).groupby(recent["unique_id"]).sum().astype(float)
    with np.errstate(divide="ignore"):
        adi = pd.Series(np.divide(days.to_numpy(), demand_days.to_numpy()), index=days.index)
    mean_units = recent.groupby("unique_id")["y"].mean()
    intermittent = adi > ADI_CUTOFF
    median = mean_units[~intermittent].median()
    out = pd.Series("slow", index=days.index, name="segment", dtype=object)
    out[intermittent] = "intermittent"
    out[~intermittent & (mean_units >= median)] = "fast"
    return out


def error_by_segment(
    history: pd.DataFrame,
    actuals: pd.DataFrame,
    forecasts: Mapping[str, pd.DataFrame],
    quantiles: list[float],
    segments: pd.Series,
    *,
    weight_window: int = 28,
    season: int = 1,
) -> pd.DataFrame:
    """WRMSSE of each model within each demand segment: rows = models, columns = segments.

    Each cell is `metrics.evaluate_forecasts(...)["wrmsse"]` on the segment's series only, so the
    weights are each series' share of its own segment's units. The last row, "n_series", counts
    the segment's series that have actuals (the series scored).

    Rolling origins: when a forecast frame has an `origin` column, each origin is scored against
    the history before it, taken from `history` and `actuals` together (so pass actuals for every
    origin's forecast days; `history` may also be the whole panel), and the cell is the plain
    mean over origins that could be scored. Without `origin` the forecast is one origin starting
    on its first `ds`. A segment that cannot be scored (no series, no units in the weight window,
    only constant histories, or no demand in the test days, for which evaluate_forecasts'
    relative bias is undefined) gets NaN and a logged warning. Missing forecast rows raise.
    """
    _require(history, _PANEL, "history")
    _require(actuals, _PANEL, "actuals")
    qcols = [quantile_col(q) for q in quantiles]
    labels = list(SEGMENTS) + sorted(set(map(str, segments.unique())) - set(SEGMENTS))
    seg = segments.astype(str)
    panel = pd.concat([history[_PANEL], actuals[_PANEL]], ignore_index=True)
    panel = panel.drop_duplicates(["unique_id", "ds"], keep="first")
    members = {s: seg.index[seg == s] for s in labels}

    rows: dict[str, dict[str, float]] = {}
    for model, fc in forecasts.items():
        _require(fc, ["unique_id", "ds", "mean", *qcols], f"forecasts[{model!r}]")
        scores: dict[str, list[float]] = {s: [] for s in labels}
        for origin, fc_o in _by_origin(fc):
            start = fc_o["ds"].min() if origin is None else origin
            train = panel[panel["ds"] < start]
            test = actuals[(actuals["ds"] >= start) & (actuals["ds"] <= fc_o["ds"].max())]
            test = test[test["unique_id"].isin(seg.index)]
            _check_covered(test, fc_o, model, origin)
            for s in labels:
                ids = members[s]
                test_s = test[test["unique_id"].isin(ids)]
                if test_s.empty:
                    continue
                try:
                    value = evaluate_forecasts(
                        train[train["unique_id"].isin(ids)],
                        test_s,
                        fc_o[fc_o["unique_id"].isin(ids)],
                        quantiles,
                        weight_window=weight_window,
                        season=season,
                    )["wrmsse"]
                except ValueError as err:
                    log.warning(
                        "WRMSSE of %s on the %s segment%s is undefined: %s",
                        model,
                        s,
                        "" if origin is None else f" at origin {origin}",
                        err,
                    )
                    value = np.nan
                scores[s].append(value)
        rows[model] = {s: _mean_finite(v) for s, v in scores.items()}

    table = pd.DataFrame.from_dict(rows, orient="index", columns=labels).astype(float)
    scored = seg[seg.index.isin(actuals["unique_id"].unique())]
    table.loc[COUNT_ROW] = scored.value_counts().reindex(labels, fill_value=0).astype(float)
    table.index.name = "model"
    return table


def _by_origin(fc: pd.DataFrame):
    if "origin" in fc.columns:
        yield from fc.groupby("origin", sort=True)
    else:
        yield None, fc


def _check_covered(test: pd.DataFrame, fc: pd.DataFrame, model: str, origin) -> None:
    keys = test[["unique_id", "ds"]].merge(
        fc[["unique_id", "ds"]].drop_duplicates(), how="left", on=["unique_id", "ds"], indicator=True
    )
    missing = keys[keys["_merge"] == "left_only"]
    if len(missing):
        first = missing.iloc[0]
        where = "" if origin is None else f" at origin {origin}"
        raise ValueError(
            f"forecasts[{model!r}]{where} has no row for {len(missing)} actual rows, "
            f"e.g. unique_id={first['unique_id']!r} ds={first['ds']}; "
            "forecast every series and day in actuals, or drop those actuals"
        )


def _mean_finite(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# ---------------------------------------------------------------------------------------------
# The report


def render(
    *,
    title: str,
    metrics: pd.DataFrame,
    forecasts: pd.DataFrame,
    history: pd.DataFrame,
    actuals: pd.DataFrame,
    quantiles: list[float],
    n_series: int = 4,
    seed: int = 0,
    per_origin: pd.DataFrame | None = None,
    by_segment: pd.DataFrame | None = None,
    inventory: pd.DataFrame | None = None,
    on_hand: pd.DataFrame | None = None,
    calibration: dict | None = None,
    lineage: dict | None = None,
    gate: tuple[pd.DataFrame, list[str]] | None = None,
    notes: Iterable[str] = (),
) -> str:
    """The whole report as one HTML string (see the module docstring for the sections).

    The best value per metric column is highlighted: lowest for errors and seconds, smallest
    |bias|, and coverage_NN closest to its nominal NN%. In the per-origin table the comparison is
    within each origin. The forecast figure shows the champion's forecasts for the top `n_series`
    series by units in `history` and `n_series` others drawn with `seed`; n_series=0 leaves the
    figure out.
    """
    _require(forecasts, ["unique_id", "ds", "mean"], "forecasts")
    _require(history, _PANEL, "history")
    _require(actuals, _PANEL, "actuals")
    if inventory is not None:
        _require(inventory, ["holding_cost", "lost_sales_cost"], "inventory")
    if n_series < 0:
        raise ValueError(f"n_series must be >= 0, got {n_series}")

    esc = html.escape
    out = [
        (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>"
        )
    ]
    out += [f"<p class='note'>{esc(str(n))}</p>" for n in notes]

    body = _table(
        _display(metrics), metrics.index.name or "model", _best_by_rule(metrics), css="metrics", first_row_class="champion"
    )
    out.append(_section("metrics", body))

    if per_origin is not None:
        best = _best_by_rule(per_origin, group="origin" if "origin" in per_origin.columns else None)
        out.append(_section("per_origin", _table(_display(per_origin), None, best, css="per-origin", show_index=False)))

    if n_series > 0:
        chosen = _pick_series(forecasts, history, n_series, seed)
        if chosen:
            bands = _bands(quantiles, forecasts.columns)
            shaded = " and ".join(label for _, _, label in bands[::-1])
            caption = (
                "Actual demand (black) and the champion's forecast mean (blue)"
                + (f" with {shaded} bands" if bands else "")
                + f"; the last {HISTORY_DAYS} days of history, then the forecast days. "
                f"Top {n_series} series by units, then up to {n_series} sampled at random (seed {seed})."
            )
            fig = _forecast_figure(chosen, forecasts, history, actuals, bands)
            out.append(_section("forecasts", f"<p class='note'>{esc(caption)}</p>" + _img(fig, "forecasts vs actuals")))

    if by_segment is not None:
        models = by_segment.drop(index=COUNT_ROW, errors="ignore")
        display = _display(by_segment)
        if COUNT_ROW in by_segment.index:
            display.loc[COUNT_ROW] = [_fmt_count(v) for v in by_segment.loc[COUNT_ROW]]
        best = _best(models, {c: None for c in models.columns}).reindex(by_segment.index, fill_value=False)
        rule = (
            f"WRMSSE within each segment (weights = each series' share of its segment's units). "
            f"Segments from each series' recent training days: intermittent when the average "
            f"interval between demand days exceeds {ADI_CUTOFF} (Syntetos-Boylan); of the rest, "
            "fast when mean daily units is at or above their median, else slow."
        )
        out.append(
            _section(
                "by_segment",
                f"<p class='note'>{esc(rule)}</p>" + _table(display, by_segment.index.name or "model", best, css="by-segment"),
            )
        )

    if inventory is not None:
        body = _table(_display(inventory), inventory.index.name or "policy", None, css="inventory")
        out.append(_section("inventory", body + _img(_cost_figure(inventory), "cost breakdown by policy")))

    if on_hand is not None:
        out.append(_section("on_hand", _img(_on_hand_figure(on_hand), "units on hand over time")))

    if calibration is not None:
        rule = (
            "Champion, pooled over origins. Coverage: share of actuals inside the central 50% and 95% "
            "intervals, of daily values and of totals over lead time + review period (what an order "
            "covers). total_within_S: share of those windows whose actual total stayed at or below the "
            "order-up-to level S; cycle_service_level: realised in the replay, against its target."
        )
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_fmt(v, k)}</td></tr>" for k, v in calibration.items())
        out.append(
            _section("calibration", f"<p class='note'>{esc(rule)}</p><table class='calibration'><tbody>{rows}</tbody></table>")
        )

    if gate is not None:  # the promotion gate's figures side by side, and the rule that decided
        figures, verdict = gate
        lines = "".join(f"<li>{esc(line)}</li>" for line in verdict)
        out.append(_section("gate", _table(_display(figures), "figure", None, css="gate") + f"<ul>{lines}</ul>"))

    if lineage is not None:
        rows = "".join(
            f"<tr><th>{esc(str(k))}</th><td style='text-align:left'>{esc(str(v))}</td></tr>" for k, v in lineage.items()
        )
        out.append(_section("lineage", f"<table class='lineage'><tbody>{rows}</tbody></table>"))

    out.append("</body></html>")
    return "".join(out)


def _section(key: str, body: str) -> str:
    return f"<section id='{key}'><h2>{html.escape(HEADINGS[key])}</h2>{body}</section>"


def _require(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {list(frame.columns)}")


# --- tables ---------------------------------------------------------------------------------


def _fmt(value, column: str = "") -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat(sep=" ")
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if str(column).startswith("n_") and float(value).is_integer():
            return str(int(float(value)))
        return f"{float(value):.3f}"
    return str(value)


def _fmt_count(value) -> str:
    return "–" if pd.isna(value) else str(int(value))


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as the text shown (not yet escaped)."""
    shown = pd.DataFrame(index=frame.index, columns=frame.columns, dtype=object)
    for col in frame.columns:
        shown[col] = [_fmt(v, col) for v in frame[col]]
    return shown


def _table(
    shown: pd.DataFrame,
    index_name: str | None,
    best: pd.DataFrame | None,
    *,
    css: str,
    show_index: bool = True,
    first_row_class: str | None = None,
) -> str:
    esc = html.escape
    head = ([f"<th>{esc(str(index_name or ''))}</th>"] if show_index else []) + [f"<th>{esc(str(c))}</th>" for c in shown.columns]
    rows = []
    for i, (label, values) in enumerate(zip(shown.index, shown.itertuples(index=False))):
        cells = [f"<th>{esc(_fmt(label))}</th>"] if show_index else []
        for j, text in enumerate(values):
            hit = best is not None and bool(best.iat[i, j])
            cells.append(f"<td class='best'>{esc(text)}</td>" if hit else f"<td>{esc(text)}</td>")
        cls = f" class='{first_row_class}'" if first_row_class and i == 0 else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table class='{css}'><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _target(column: str) -> tuple[bool, float | None]:
    """(has a rule, target): target None means lower is better, a number means closest to it."""
    if column in LOWER_IS_BETTER:
        return True, None
    if column == "bias":
        return True, 0.0
    match = re.fullmatch(r"coverage_(\d+)", str(column))
    if match:
        return True, int(match[1]) / 100
    return False, None


def _best_by_rule(frame: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    rules = {c: t for c in frame.columns for ok, t in [_target(c)] if ok}
    if group is None:
        return _best(frame, rules)
    parts = [_best(part, rules) for _, part in frame.groupby(group, sort=False)]
    return pd.concat(parts).reindex(frame.index) if parts else _best(frame, {})


def _best(frame: pd.DataFrame, rules: dict[str, float | None]) -> pd.DataFrame:
    """Boolean frame: True on the best cell(s) of each ruled column (ties all marked, NaN never)."""
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for col, target in rules.items():
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        distance = values if target is None else np.abs(values - target)
        if not np.isfinite(distance).any():
            continue
        lowest = np.nanmin(np.where(np.isfinite(distance), distance, np.nan))
        mask[col] = np.isfinite(distance) & np.isclose(distance, lowest, rtol=1e-9, atol=1e-12)
    return mask


# --- figures --------------------------------------------------------------------------------


def _img(fig: Figure, alt: str) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _label(text, limit: int = 32) -> str:
    """Plain text for matplotlib: `$` would otherwise start mathtext."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _pick_series(forecasts: pd.DataFrame, history: pd.DataFrame, n: int, seed: int) -> list[tuple[object, str]]:
    ids = pd.Index(forecasts["unique_id"].unique())
    units = history[history["unique_id"].isin(ids)].groupby("unique_id")["y"].sum().reindex(ids, fill_value=0)
    ranked = (
        pd.DataFrame({"unique_id": ids, "units": units.to_numpy()})
        .sort_values(["units", "unique_id"], ascending=[False, True], kind="stable")["unique_id"]
        .tolist()
    )
    top, rest = ranked[:n], ranked[n:]
    rng = np.random.default_rng(seed)
    drawn = sorted(rng.choice(len(rest), size=min(n, len(rest)), replace=False).tolist())
    return [(i, "top") for i in top] + [(rest[k], "random") for k in drawn]


def _bands(quantiles: list[float], columns: Iterable[str]) -> list[tuple[str, str, str]]:
    """(lower column, upper column, label), widest first: 95% and 50% when present, else the widest pair."""
    available = [q for q in quantiles if quantile_col(q) in set(columns)]

    def find(level: float):
        return next((q for q in available if np.isclose(q, level)), None)

    pairs = [(find(lo), find(hi)) for lo, hi in ((0.025, 0.975), (0.25, 0.75))]
    pairs = [(lo, hi) for lo, hi in pairs if lo is not None and hi is not None]
    if not pairs:
        below, above = [q for q in available if q < 0.5], [q for q in available if q > 0.5]
        if below and above:
            pairs = [(min(below), max(above))]
    return [(quantile_col(lo), quantile_col(hi), f"{round((hi - lo) * 100, 1):g}% interval") for lo, hi in pairs]


def _forecast_figure(chosen, forecasts, history, actuals, bands) -> Figure:
    ids = [uid for uid, _ in chosen]
    hist = {k: g for k, g in history[history["unique_id"].isin(ids)].groupby("unique_id")}
    act = {k: g for k, g in actuals[actuals["unique_id"].isin(ids)].groupby("unique_id")}
    fcs = {k: g for k, g in forecasts[forecasts["unique_id"].isin(ids)].groupby("unique_id")}
    empty = history.iloc[:0]
    ncols = min(4, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    fig = Figure(figsize=(2.6 * ncols, 1.8 * nrows + 0.35), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    alphas = [0.15, 0.3][-len(bands) :] if bands else []
    for ax, (uid, kind) in zip(axes.flat, chosen):
        seen = pd.concat([hist.get(uid, empty).sort_values("ds").tail(HISTORY_DAYS), act.get(uid, empty).sort_values("ds")])
        ax.plot(seen["ds"], seen["y"], color="black", lw=0.8, label="actual")
        for _, fc in _by_origin(fcs[uid]):
            fc = fc.sort_values("ds")
            for (lo, hi, label), alpha in zip(bands, alphas):
                ax.fill_between(fc["ds"], fc[lo], fc[hi], color="tab:blue", alpha=alpha, lw=0, label=label)
            ax.plot(fc["ds"], fc["mean"], color="tab:blue", lw=1.0, label="forecast mean")
            ax.axvline(fc["ds"].iloc[0], color="0.6", ls=":", lw=0.8)
        ax.set_title(_label(f"{kind}: {uid}"), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_ylim(bottom=0)
        if pd.api.types.is_datetime64_any_dtype(seen["ds"]):
            locator = mdates.AutoDateLocator(maxticks=4)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            ax.xaxis.get_offset_text().set_fontsize(6)
    for ax in axes.flat[len(chosen) :]:
        ax.set_visible(False)
    handles = dict(zip(*reversed(axes.flat[0].get_legend_handles_labels())))
    fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncols=len(handles), fontsize=7, frameon=False)
    return fig


def _cost_figure(inventory: pd.DataFrame) -> Figure:
    holding = pd.to_numeric(inventory["holding_cost"], errors="coerce").fillna(0).to_numpy()
    lost = pd.to_numeric(inventory["lost_sales_cost"], errors="coerce").fillna(0).to_numpy()
    y = np.arange(len(inventory))
    fig = Figure(figsize=(6.5, 0.4 * len(inventory) + 1.0), layout="constrained")
    ax = fig.subplots()
    ax.barh(y, holding, color="tab:blue", label="holding")
    ax.barh(y, lost, left=holding, color="tab:orange", label="lost sales")
    ax.set_yticks(y, [_label(p, 40) for p in inventory.index])
    ax.invert_yaxis()
    ax.set_xlabel("cost", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return fig


def _on_hand_figure(on_hand: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(7.5, 2.6), layout="constrained")
    ax = fig.subplots()
    for col in on_hand.columns:
        ax.plot(on_hand.index, pd.to_numeric(on_hand[col], errors="coerce"), lw=1.0, label=_label(col, 40))
    ax.set_xlabel(_label(on_hand.index.name or "day"), fontsize=8)
    ax.set_ylabel("units on hand", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=7)
    if pd.api.types.is_datetime64_any_dtype(on_hand.index):
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.legend(fontsize=7, frameon=False)
    return fig
