import math

import numpy as np
import pandas as pd
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


def test_deepfm_gives_a_re_buyer_their_habit_and_a_customer_who_never_re_buys_the_new_product(tmp_path):
    frame = _shop()
    items = sorted(frame["sku"].unique())
    model = Network(
        architecture="deepfm",
        dim=8,
        lr=0.01,
        epochs=40,
        batch_size=64,
        seed=0,
        accelerator="cpu",
        horizon=7,
        windows=8,
        negatives=5,
        popularity_days=7,
    ).fit(frame, items)
    scores = model.score(["r0", "n0"])
    a, t9 = items.index("A"), items.index("T9")
    # The re-buyer's best is their habit; the one who never re-buys is shown last week's launch, which
    # they have not bought, above every product they bought once.
    assert scores[0].argmax() == a
    bought_by_n0 = [items.index(f"T{w}") for w in range(9)]
    assert scores[1, t9] > scores[1, bought_by_n0].max() and scores[1].argmax() == t9
    # Only 5 of the 11 products (A, T0..T9) were drawn per customer: never-bought odds are scaled by 5/11.
    assert len(items) == 11 and math.isclose(model.module.hparams["never_offset"], math.log(5 / 11), rel_tol=1e-9)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(load(tmp_path / "m").score(["r0", "n0", "nobody"]), model.score(["r0", "n0", "nobody"]), atol=1e-6)


def test_the_new_item_boost_adds_its_log_odds_to_never_bought_products_only():
    frame = _shop()
    items = sorted(frame["sku"].unique())
    args = dict(architecture="deepfm", dim=4, lr=0.01, epochs=1, batch_size=64, seed=0, accelerator="cpu", horizon=7, windows=2)
    plain = Network(**args).fit(frame, items)
    boosted = Network(**args, new_item_boost=1.5).fit(frame, items)
    diff = boosted.score(["r0"])[0] - plain.score(["r0"])[0]
    a = items.index("A")  # r0's only product
    assert abs(diff[a]) < 1e-6 and np.allclose(np.delete(diff, a), 1.5, atol=1e-5)
