from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from supplyml.forecasting.metrics import evaluate_forecasts, quantile_col
from supplyml.forecasting.report import (
    HEADINGS,
    _bands,
    _pick_series,
    error_by_segment,
    render,
    segments,
)

QUANTILES = [0.025, 0.25, 0.75, 0.975]
DAY0 = pd.Timestamp("2024-01-01")


def panel(values: dict[str, list[float]], start: pd.Timestamp = DAY0) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(ys)), "y": ys}) for uid, ys in values.items()],
        ignore_index=True,
    )


def forecast_from(actuals: pd.DataFrame, shift: dict[str, float] | None = None, spread: float = 1.0) -> pd.DataFrame:
    """Forecast mean = actual + shift[series]; quantiles a fixed spread around the mean."""
    fc = actuals[["unique_id", "ds"]].copy()
    fc["mean"] = actuals["y"].to_numpy() + actuals["unique_id"].map(shift or {}).fillna(0).to_numpy()
    for q in QUANTILES:
        fc[quantile_col(q)] = fc["mean"] + spread * (q - 0.5) * 4
    return fc


# --- segments ---------------------------------------------------------------------------------


def test_segments_by_hand():
    # Window 8 days. Ten earlier days are outside the window and must not count ("slow" sold 100/day then).
    early = [100.0] * 10
    series = {
        "fast": early + [10.0] * 8,  # ADI 8/8 = 1, mean 10
        "slow": early + [2.0] * 8,  # ADI 1, mean 2
        "mid": early + [5.0] * 8,  # ADI 1, mean 5 = median of (10, 2, 5) -> fast
        "every3": early + [0, 0, 6, 0, 0, 6, 0, 0.0],  # ADI 8/2 = 4 -> intermittent
        "six_of_8": early + [9, 9, 9, 0, 9, 9, 9, 0.0],  # ADI 8/6 = 1.333 > 1.32 -> intermittent
        "none": early + [0.0] * 8,  # no demand: ADI infinite -> intermittent
    }
    got = segments(panel(series), window=8)
    assert got.to_dict() == {
        "every3": "intermittent",
        "fast": "fast",
        "mid": "fast",
        "none": "intermittent",
        "six_of_8": "intermittent",
        "slow": "slow",
    }


def test_segments_seven_of_eight_is_not_intermittent():
    # ADI 8/7 = 1.143 <= 1.32; means 7 (seven 8s) and 1: median 4 -> the first fast, the second slow
    got = segments(panel({"a": [8, 8, 8, 0, 8, 8, 8, 8.0], "b": [1.0] * 8}), window=8)
    assert got.to_dict() == {"a": "fast", "b": "slow"}


def test_segments_rejects_bad_window():
    with pytest.raises(ValueError, match="window"):
        segments(panel({"a": [1.0]}), window=0)


# --- error_by_segment ---------------------------------------------------------------------------

# 14 training days, 7 forecast days (days 15..21).
HIST = {
    "fast": [10.0, 12] * 7,  # squared naive scale 4
    "slow": [1.0, 2] * 7,  # squared naive scale 1
    "lumpy": [0, 0, 3.0] * 4 + [0, 0],
}  # squared diffs 0,9,9 repeating: 8 nines over 13 -> 72/13
TEST = {"fast": [11.0] * 7, "slow": [1.0] * 7, "lumpy": [0, 0, 3.0, 0, 0, 3, 0]}
TEST_START = DAY0 + pd.Timedelta(days=14)


def test_error_by_segment_by_hand():
    history, actuals = panel(HIST), panel(TEST, TEST_START)
    seg = segments(history, window=14)
    assert seg.to_dict() == {"fast": "fast", "lumpy": "intermittent", "slow": "slow"}
    forecasts = {"perfect": forecast_from(actuals), "off": forecast_from(actuals, {"fast": 2, "slow": 2, "lumpy": 2})}
    table = error_by_segment(history, actuals, forecasts, QUANTILES, seg)
    assert list(table.columns) == ["fast", "slow", "intermittent"]
    assert table.loc["perfect"].tolist() == [0.0, 0.0, 0.0]
    # one series per segment, so WRMSSE = its RMSSE = sqrt(MSE / scale) with MSE = 2**2 = 4
    assert table.loc["off", "fast"] == pytest.approx(np.sqrt(4 / 4))
    assert table.loc["off", "slow"] == pytest.approx(np.sqrt(4 / 1))
    assert table.loc["off", "intermittent"] == pytest.approx(np.sqrt(4 / (72 / 13)))
    assert table.loc["n_series"].tolist() == [1, 1, 1]


def test_error_by_segment_matches_evaluate_forecasts_on_the_subset():
    rng = np.random.default_rng(3)
    hist = {f"s{i}": rng.poisson(lam, 40).astype(float).tolist() for i, lam in enumerate([20, 15, 9, 3, 2, 0.3, 0.2, 0.4])}
    test = {k: rng.poisson(max(np.mean(v), 0.5), 7).astype(float).tolist() for k, v in hist.items()}
    history, actuals = panel(hist), panel(test, DAY0 + pd.Timedelta(days=40))
    fc = forecast_from(actuals, {k: rng.normal(0, 2) for k in hist}, spread=2)
    seg = segments(history, window=28)
    table = error_by_segment(history, actuals, {"m": fc}, QUANTILES, seg)
    for name in ("fast", "slow", "intermittent"):
        ids = seg.index[seg == name]
        assert len(ids) > 0
        sub = [f[f["unique_id"].isin(ids)] for f in (history, actuals, fc)]
        assert table.loc["m", name] == pytest.approx(evaluate_forecasts(*sub, QUANTILES)["wrmsse"])
        assert table.loc["n_series", name] == len(ids)


def test_error_by_segment_rolling_origins_use_history_before_each_origin():
    # origin 1 = day 15, origin 2 = day 22; the caller passes history before day 15 and actuals for both.
    history = panel(HIST)
    test = {k: v + v for k, v in TEST.items()}
    actuals = panel(test, TEST_START)
    fc = forecast_from(actuals, {"fast": 2.0})
    fc["origin"] = np.where(fc["ds"] < TEST_START + pd.Timedelta(days=7), TEST_START, TEST_START + pd.Timedelta(days=7))
    table = error_by_segment(history, actuals, {"m": fc}, QUANTILES, segments(history, window=14))
    # origin 1: scale 4 -> RMSSE 1. Origin 2 adds seven 11s to the history: diffs 12->11 (1) then six 0s,
    # so the squared scale is (13 * 4 + 1) / 20 = 2.65 and RMSSE sqrt(4 / 2.65). The cell is their mean.
    assert table.loc["m", "fast"] == pytest.approx((1 + np.sqrt(4 / 2.65)) / 2)
    assert table.loc["m", "slow"] == 0.0


def test_unscorable_segment_is_nan_with_a_warning(caplog):
    # The lumpy series sells nothing in the test week: evaluate_forecasts cannot score that subset.
    history, actuals = panel(HIST), panel({**TEST, "lumpy": [0.0] * 7}, TEST_START)
    table = error_by_segment(history, actuals, {"m": forecast_from(actuals)}, QUANTILES, segments(history, window=14))
    assert np.isnan(table.loc["m", "intermittent"]) and table.loc["m", "fast"] == 0.0
    assert "intermittent segment is undefined" in caplog.text


def test_error_by_segment_raises_on_missing_forecast_rows():
    history, actuals = panel(HIST), panel(TEST, TEST_START)
    fc = forecast_from(actuals).iloc[1:]
    with pytest.raises(ValueError, match="has no row for 1 actual rows"):
        error_by_segment(history, actuals, {"m": fc}, QUANTILES, segments(history, window=14))


# --- render ----------------------------------------------------------------------------------------


class Tables(HTMLParser):
    """Collects each table (by css class) as {row label: [(cell class, text), ...]}."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.current, self.row, self.cell = {}, None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.current = self.tables.setdefault(attrs.get("class"), [])
        elif tag == "tr" and self.current is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = [tag, attrs.get("class"), ""]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[2] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(tuple(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.current.append(self.row)
            self.row = None
        elif tag == "table":
            self.current = None

    def rows(self, table: str) -> dict[str, dict[str, str | None]]:
        """{row label: {column: cell class}} for a table with an index column."""
        header, *body = self.tables[table]
        names = [text for _, _, text in header[1:]]
        return {r[0][2]: {n: cls for n, (_, cls, _) in zip(names, r[1:])} for r in body}


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    ids = [f"sku{i:02d}" for i in range(12)]
    hist = panel({k: rng.poisson(1 + 2 * i, 90).astype(float).tolist() for i, k in enumerate(ids)})
    act = panel({k: rng.poisson(1 + 2 * i, 14).astype(float).tolist() for i, k in enumerate(ids)}, DAY0 + pd.Timedelta(days=90))
    metrics = pd.DataFrame(
        {
            "wrmsse": [0.8, 0.9, 1.1],
            "mase": [0.7, 0.75, 0.6],
            "wspl": [0.5, 0.6, 0.7],
            "coverage_50": [0.40, 0.55, 0.70],
            "coverage_95": [0.93, 0.99, 0.80],
            "bias": [-0.05, 0.02, -0.3],
            "seconds": [3.0, 0.1, 2.0],
        },
        index=pd.Index(["supplyml", "seasonal_naive", "autoets"], name="model"),
    )
    return {
        "title": "Backtest",
        "metrics": metrics,
        "forecasts": forecast_from(act, spread=2),
        "history": hist,
        "actuals": act,
        "quantiles": QUANTILES,
    }


def extras(inputs):
    """Every optional section's input."""
    hist, act = inputs["history"], inputs["actuals"]
    seg = segments(hist)
    by_segment = error_by_segment(
        hist, act, {"supplyml": inputs["forecasts"], "naive": forecast_from(act, dict.fromkeys(seg.index, 1.0))}, QUANTILES, seg
    )
    per_origin = pd.DataFrame(
        {
            "origin": [DAY0] * 2 + [DAY0 + pd.Timedelta(days=7)] * 2,
            "model": ["supplyml", "naive"] * 2,
            "wrmsse": [0.8, 0.9, 1.2, 1.0],
            "coverage_95": [0.9, 0.97, 0.96, 0.99],
        }
    )
    rng = np.random.default_rng(1)
    inventory = pd.DataFrame(
        {
            "cycle_service_level": [0.93, 0.90, 1.0],
            "fill_rate": [0.97, 0.95, 1.0],
            "avg_on_hand": [120.0, 150, 40],
            "holding_cost": [12.0, 15, 4],
            "lost_sales_cost": [30.0, 45, 0],
            "total_cost": [42.0, 60, 4],
        },
        index=pd.Index(["forecast base stock", "28-day MA + normal safety stock", "perfect foresight"], name="policy"),
    )
    on_hand = pd.DataFrame({p: rng.uniform(0, 200, 14) for p in inventory.index}, index=pd.RangeIndex(14, name="day"))
    lineage = {"git_commit": "abc123", "dvc_md5": "d41d8cd98f00b204e9800998ecf8427e", "run_id": "r1"}
    calibration = {"daily_coverage_50": 0.48, "total_coverage_95": 0.951, "cycle_service_level": 0.944}
    gate = (
        pd.DataFrame(
            {"challenger": {"wrmsse": 0.91, "total_cost": 990.0}, "champion (v1)": {"wrmsse": 0.93, "total_cost": 1000.0}}
        ),
        ["passed: WRMSSE at most 2% worse than the champion's (wrmsse_regression -0.0215)"],
    )
    return {
        "by_segment": by_segment,
        "per_origin": per_origin,
        "inventory": inventory,
        "on_hand": on_hand,
        "calibration": calibration,
        "lineage": lineage,
        "gate": gate,
    }


@pytest.fixture(scope="module")
def full(inputs):
    return render(**inputs, **extras(inputs), notes=["WRMSSE weighted by units in the last 28 days."])


def test_full_report_has_every_section_and_three_images(full):
    for heading in HEADINGS.values():
        assert f"<h2>{heading}</h2>" in full
    assert full.count("<img ") == 3  # forecasts, cost breakdown, on-hand
    assert full.count("src='data:image/png;base64,") == 3
    assert "http://" not in full and "https://" not in full and "<script" not in full
    assert len(full.encode()) < 300_000


def test_calibration_section_lists_each_figure(full):
    section = full.split("<section id='calibration'>")[1].split("</section>")[0]
    for row in (
        "<tr><th>daily_coverage_50</th><td>0.480</td></tr>",
        "<tr><th>total_coverage_95</th><td>0.951</td></tr>",
        "<tr><th>cycle_service_level</th><td>0.944</td></tr>",
    ):
        assert row in section


def test_gate_section_puts_both_models_side_by_side_with_the_rule(full):
    section = full.split("<section id='gate'>")[1].split("</section>")[0]
    assert "<th>challenger</th><th>champion (v1)</th>" in section
    assert "<tr><th>wrmsse</th><td>0.910</td><td>0.930</td></tr>" in section
    assert "<li>passed: WRMSSE at most 2% worse than the champion&#x27;s (wrmsse_regression -0.0215)</li>" in section


def test_optional_sections_are_omitted(inputs):
    out = render(**inputs)
    assert f"<h2>{HEADINGS['metrics']}</h2>" in out and f"<h2>{HEADINGS['forecasts']}</h2>" in out
    for key in ("per_origin", "by_segment", "inventory", "on_hand", "lineage", "gate"):
        assert HEADINGS[key] not in out
        assert f"id='{key}'" not in out
    assert out.count("<img ") == 1
    assert render(**{**inputs, "n_series": 0}).count("<img ") == 0


def test_best_values_are_highlighted(full):
    rows = Tables(full).rows("metrics")
    best = {col: [m for m, cells in rows.items() if cells[col] == "best"] for col in rows["supplyml"]}
    assert best == {
        "wrmsse": ["supplyml"],
        "mase": ["autoets"],
        "wspl": ["supplyml"],
        "coverage_50": ["seasonal_naive"],  # |0.55 - 0.5| beats |0.40 - 0.5|
        "coverage_95": ["supplyml"],  # |0.93 - 0.95| beats |0.99 - 0.95|
        "bias": ["seasonal_naive"],
        "seconds": ["seasonal_naive"],
    }
    assert "<td class='best'>0.800</td>" in full  # three decimals


def test_per_origin_highlight_is_within_each_origin(full):
    header, *body = Tables(full).tables["per-origin"]
    assert [t for _, _, t in header] == ["origin", "model", "wrmsse", "coverage_95"]
    cells = [[(cls, text) for _, cls, text in row] for row in body]
    assert cells[0][0][1] == "2024-01-01"
    assert [row[2][0] for row in cells] == ["best", None, None, "best"]  # 0.8 at origin 1, 1.0 at origin 2
    assert [row[3][0] for row in cells] == [None, "best", "best", None]  # 0.97 and 0.96 are closest to 0.95


def test_segment_table_marks_lowest_error_and_counts(full):
    table = Tables(full).tables["by-segment"]
    header, *body = table
    assert [t for _, _, t in header] == ["model", "fast", "slow", "intermittent"]
    labels = [row[0][2] for row in body]
    assert labels == ["supplyml", "naive", "n_series"]
    assert body[0][1:] == [("td", "best", "0.000")] * 3  # perfect forecast
    assert [cls for _, cls, _ in body[1][1:]] == [None, None, None]
    counts = [int(text) for _, _, text in body[2][1:]]  # the count row is integers and never highlighted
    assert sum(counts) == 12 and all(cls is None for _, cls, _ in body[2][1:])


def test_text_is_escaped(inputs):
    metrics = inputs["metrics"].rename(index={"autoets": "<b>ets</b>"})
    fc, hist, act = (
        f.replace({"unique_id": {"sku11": "$<x>&"}}) for f in (inputs["forecasts"], inputs["history"], inputs["actuals"])
    )
    out = render(
        **{
            **inputs,
            "metrics": metrics,
            "forecasts": fc,
            "history": hist,
            "actuals": act,
            "title": "Run <script>alert(1)</script> & co",
        },
        notes=["weights <by units>"],
        lineage={"git<commit>": "a&b"},
    )
    assert "<script>" not in out and "<b>ets" not in out
    assert "Run &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in out
    assert "weights &lt;by units&gt;" in out
    assert "<th>git&lt;commit&gt;</th>" in out and "a&amp;b" in out
    assert "&lt;b&gt;ets&lt;/b&gt;" in out


def test_inventory_needs_both_cost_columns(inputs):
    inventory = extras(inputs)["inventory"].drop(columns="lost_sales_cost")
    with pytest.raises(ValueError, match="lost_sales_cost"):
        render(**inputs, inventory=inventory)


def test_rolling_origin_forecasts_render(inputs):
    fc = inputs["forecasts"].copy()
    fc["origin"] = np.where(
        fc["ds"] < fc["ds"].min() + pd.Timedelta(days=7), fc["ds"].min(), fc["ds"].min() + pd.Timedelta(days=7)
    )
    assert render(**{**inputs, "forecasts": fc}, n_series=2).count("<img ") == 1


def test_pick_series_top_by_units_then_seeded_sample(inputs):
    chosen = _pick_series(inputs["forecasts"], inputs["history"], 3, seed=0)
    top = [uid for uid, kind in chosen if kind == "top"]
    sample = [uid for uid, kind in chosen if kind == "random"]
    assert top == ["sku11", "sku10", "sku09"]  # Poisson rates rise with the index
    assert len(sample) == 3 and not set(sample) & set(top)
    assert _pick_series(inputs["forecasts"], inputs["history"], 3, seed=0) == chosen
    assert len(_pick_series(inputs["forecasts"], inputs["history"], 10, seed=0)) == 12


def test_bands_prefer_95_and_50_else_widest_pair():
    m5 = [0.005, 0.025, 0.165, 0.25, 0.5, 0.75, 0.835, 0.975, 0.995]
    cols = [quantile_col(q) for q in m5]
    assert _bands(m5, cols) == [("q0.025", "q0.975", "95% interval"), ("q0.25", "q0.75", "50% interval")]
    assert _bands([0.1, 0.2, 0.5, 0.9], ["q0.1", "q0.2", "q0.5", "q0.9"]) == [("q0.1", "q0.9", "80% interval")]
    assert _bands([0.5], ["q0.5"]) == []
