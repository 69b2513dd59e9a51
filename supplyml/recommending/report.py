"""The recommender's HTML report: test-window metrics against the peers for all, repeat and new items
(the best per column highlighted), the gate's verdict, the customer segments and the lineage."""

from __future__ import annotations

import html

import pandas as pd

from supplyml.forecasting.report import _CSS
from supplyml.recommending.metrics import METRICS, SUBSETS

_NOTES = {
    "all": "every test-window customer the model knows; relevant = everything they bought in the window",
    "repeat": "the same one list per customer, judged only on items the customer had bought before",
    "new": "the same list, judged only on items new to the customer (a repeat item in it is a miss)",
}


def render(table: pd.DataFrame, verdict, customers, products, dates: dict[str, str], lineage: dict[str, str]) -> str:
    """`table`: one row per model (`model` first), flat `metric/subset` columns; `verdict` a
    recommending.lifecycle.Verdict; `customers` and `products` segments.Segmentations."""
    esc = html.escape
    title = f"supplyml recommendations on the test window {dates['test_start']} .. {dates['end']}"
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{_CSS}</style>"
        f"</head><body><h1>{esc(title)}</h1><p class='note'>Every model is fitted on the days before "
        f"{esc(dates['test_start'])} and ranks the whole catalogue once per customer; hyperparameters were "
        f"chosen on {esc(dates['val_start'])} .. the day before the test window.</p>"
    ]
    for subset in SUBSETS:
        part = table[[f"{m}/{subset}" for m in METRICS]]
        part.columns = list(METRICS)
        n = int(table[f"customers/{subset}"].iloc[0])
        out.append(
            f"<h2>{esc(subset)} items ({n} customers)</h2><p class='note'>{esc(_NOTES[subset])}</p>"
            + _table(part, best=part.columns.drop("coverage@10"))
        )
    lines = "".join(f"<li>{esc(r)}</li>" for r in verdict.reasons)
    head = "promote" if verdict.promote else "keep the champion" if verdict.champion else "reject"
    out.append(f"<h2>gate: {esc(head)}</h2>{_table(verdict.table())}<ul>{lines}</ul>")
    for seg, title, units in (
        (
            customers,
            "customer segments (RFM",
            "recency in days before the test window, frequency in invoices, monetary in the data's currency",
        ),
        (
            products,
            "product demand segments (volume, intermittency, weekly season",
            "mean daily units, share of days without demand, share of variance the weekday explains; "
            "the forecasting panel's series, on days before the test window",
        ),
    ):
        silhouette = ", ".join(f"{k}: {v:.3f}" for k, v in seg.silhouette.items())
        out.append(
            f"<h2>{esc(title)}; k-means, k = {seg.k} by silhouette)</h2><p class='note'>silhouette per k: "
            f"{esc(silhouette)}; {esc(units)}.</p>{_table(seg.profile)}"
        )
    rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td style='text-align:left'>{esc(str(v))}</td></tr>"
        for k, v in lineage.items()
        if not k.startswith("mlflow.")
    )
    out.append(f"<h2>lineage</h2><table><tbody>{rows}</tbody></table></body></html>")
    return "".join(out)


def _table(frame: pd.DataFrame, best=()) -> str:
    """`frame` as HTML; in the `best` columns the highest value is bold on green."""
    esc = html.escape
    top = {c: frame[c].max() for c in best}
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    body = []
    for name, row in frame.iterrows():
        cells = []
        for c, v in row.items():
            text = f"{v:.4f}" if isinstance(v, float) else esc(str(v))
            cells.append(f"<td class='best'>{text}</td>" if c in top and v == top[c] else f"<td>{text}</td>")
        body.append(f"<tr><th>{esc(str(name))}</th>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
