import math

import numpy as np
import pandas as pd
import pytest
import torch

from supplyml.recommending import fields, load
from supplyml.recommending.modules import DeepFM
from supplyml.recommending.networks import Network


def _frame(rows, start="2011-01-01"):
    """(customer, sku, day, country) rows as interactions with `row`/`col` indices (sorted ids)."""
    df = pd.DataFrame(rows, columns=["customer_id", "sku", "day", "country"])
    df["ds"] = pd.Timestamp(start) + pd.to_timedelta(df.pop("day"), unit="D")
    df["quantity"], df["value"] = 1.0, 2.0
    df["row"] = df["customer_id"].map({c: i for i, c in enumerate(sorted(df["customer_id"].unique()))})
    df["col"] = df["sku"].map({s: j for j, s in enumerate(sorted(df["sku"].unique()))})
    return df


def test_fields_of_a_pair_count_only_the_days_before_as_of_by_hand():
    # c0 bought A on days 0 and 10, B on day 5 (from the UK, then France); c1 bought B on day 19, and C on
    # day 25, after the as-of day 20, which no field may see.
    rows = [("c0", "A", 0, "UK"), ("c0", "B", 5, "UK"), ("c0", "A", 10, "France"), ("c1", "B", 19, "UK"), ("c1", "C", 25, "UK")]
    df = _frame(rows)
    f = fields.as_of(df, pd.Timestamp("2011-01-21"), (2, 3), {"France": 1, "UK": 2}, 7, 0)
    codes = f.codes(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 2]))
    names = list(fields.NAMES)
    recency, frequency = codes[:, names.index("recency")], codes[:, names.index("frequency")]
    # c0-A: last bought 10 days before (7 < 10 <= 14: bucket 2), on 2 days (bucket 2); c0-B: 15 days (3), once (1);
    # never bought: 0 and 0, including c1-C, bought only after the as-of day.
    assert recency.tolist() == [2, 3, 0, 0] and frequency.tolist() == [2, 1, 0, 0]
    assert codes[:, names.index("country")].tolist() == [1, 1, 1, 2]  # c0's latest line shipped to France
    # Buyers in the last 7 days (days 13..19): B once (log2 2 = 1), A and C none.
    assert codes[:, names.index("popularity_band")].tolist() == [0, 1, 0, 0]
    assert codes[:, names.index("price_band")].tolist()[2] == 0  # C was never sold before the day
    assert f.sizes[names.index("customer")] == 2 and f.sizes[names.index("product")] == 3
    unknown = fields.as_of(df.drop(columns="country"), pd.Timestamp("2011-01-21"), (2, 3), {}, 7, 0)
    assert unknown.codes(np.array([0, 1]), np.array([0, 1]))[:, names.index("country")].tolist() == [0, 0]


def test_training_examples_are_described_as_of_their_windows_first_day():
    # c0 bought A on days 0 and 10; c1 bought B on day 3 and C on day 12. The data ends on day 12, so the
    # one 7-day window is days 6..12 (the one before it would start before the data), described as of day 6.
    df = _frame([("c0", "A", 0, "UK"), ("c0", "A", 10, "UK"), ("c1", "B", 3, "UK"), ("c1", "C", 12, "UK")])
    codes, labels, _ = fields.examples(df, (2, 3), horizon=7, windows=2, negatives=1, popularity_days=7, seed=0)
    names = list(fields.NAMES)
    pick = [names.index(n) for n in ("recency", "frequency")]
    seen = {
        (int(c[names.index("customer")]), int(c[names.index("product")])): (int(y), *c[pick].tolist())
        for c, y in zip(codes, labels)
    }
    # c0-A: bought again in the window; as of day 6 it was bought once, 6 days before (the day-10 purchase
    # is the label, not a feature). c1-B: a habit not bought again. c1-C: new to c1 and bought.
    assert seen[(0, 0)] == (1, 1, 1) and seen[(1, 1)] == (0, 1, 1) and seen[(1, 2)] == (1, 0, 0)
    assert set(seen) <= {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)} and len(labels) == len(seen)
    with pytest.raises(ValueError, match="last 2 windows of 30 days"):
        fields.examples(df, (2, 3), horizon=30, windows=2, negatives=1, popularity_days=7, seed=0)


def test_deepfm_is_bias_plus_first_order_plus_field_pairs_plus_mlp_by_hand():
    torch.manual_seed(0)
    sizes = [3, 2, 4, 5]
    module = DeepFM(3, 4, sizes, dim=5, hidden=6, dropout=0.0).eval()
    for emb in module.embed:
        torch.nn.init.normal_(emb.weight)
    for w in module.weight:
        torch.nn.init.normal_(w.weight)
    codes = torch.tensor([[0, 1, 3, 4], [2, 0, 0, 1]])
    logits = module(codes)
    assert logits.shape == (2,)
    for b in range(2):
        v = [module.embed[f].weight[codes[b, f]] for f in range(4)]
        pairs = sum(float(v[i] @ v[j]) for i in range(4) for j in range(i + 1, 4))
        first = sum(float(module.weight[f].weight[codes[b, f], 0]) for f in range(4))
        deep = float(module.deep(torch.cat(v)[None])[0, 0])
        assert math.isclose(float(logits[b]), float(module.bias) + first + pairs + deep, rel_tol=1e-5, abs_tol=1e-5)


def _shop():
    """Planted: r0..r9 re-buy A every week; n0..n9 never re-buy: each week they buy the product that e0..e29
    launched the week before (T0, T1, ...), once. Ten weeks."""
    rows = []
    for week in range(10):
        day = 7 * week
        rows += [(f"r{i}", "A", day, "UK") for i in range(10)]
        rows += [(f"e{i}", f"T{week}", day, "UK") for i in range(30)]
        if week:
            rows += [(f"n{i}", f"T{week - 1}", day + 3, "UK") for i in range(10)]
    df = _frame(rows)
    return df.drop(columns=["row", "col"])


def _deepfm(frame, **params):
    """DeepFM on the planted shop's weekly rhythm: 7-day windows, on CPU."""
    base = {"architecture": "deepfm", "lr": 0.01, "batch_size": 64, "seed": 0, "accelerator": "cpu", "horizon": 7}
    return Network(**base, **params).fit(frame, sorted(frame["sku"].unique()))


def test_deepfm_gives_a_re_buyer_their_habit_and_a_customer_who_never_re_buys_the_new_product(tmp_path):
    frame = _shop()
    items = sorted(frame["sku"].unique())
    model = _deepfm(frame, dim=8, epochs=40, windows=8, negatives=5, popularity_days=7)
    scores = model.score(["r0", "n0"])
    a, t9 = items.index("A"), items.index("T9")
    # The re-buyer's best is their habit; the one who never re-buys is shown last week's launch, which
    # they have not bought, above every product they bought once.
    assert scores[0].argmax() == a
    bought_by_n0 = [items.index(f"T{w}") for w in range(9)]
    assert scores[1, t9] > scores[1, bought_by_n0].max() and scores[1].argmax() == t9
    # 5 draws with replacement from the 11 products (A, T0..T9) keep a given one with chance 1 - (10/11)^5.
    assert len(items) == 11 and math.isclose(model.module.hparams["never_offset"], math.log(0.379079), rel_tol=1e-5)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(load(tmp_path / "m").score(["r0", "n0", "nobody"]), model.score(["r0", "n0", "nobody"]), atol=1e-6)


def test_never_bought_products_get_the_sampling_offset_and_the_boost_on_top_of_the_network():
    frame = _shop()
    items = sorted(frame["sku"].unique())
    model = _deepfm(frame, dim=4, epochs=1, windows=2, negatives=3)
    row = model.customers.index("r0")  # r0's only product is A
    with torch.no_grad():
        raw = model.module(torch.as_tensor(model.data.fields.codes(np.array([row])))).numpy()
    a, offset = items.index("A"), math.log(1 - (10 / 11) ** 3)
    for boost in (0.0, 1.5):
        model.module.hparams["new_item_boost"] = boost
        diff = model.score(["r0"])[0] - raw
        assert abs(diff[a]) < 1e-5 and np.allclose(np.delete(diff, a), offset + boost, atol=1e-5)
