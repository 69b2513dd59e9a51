import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from supplyml.config import Config, DataConfig, load_config
from supplyml.recommending import FALLBACK, load
from supplyml.recommending.base import top_k
from supplyml.recommending.bench import format_table
from supplyml.recommending.bench import run as run_bench
from supplyml.recommending.interactions import (
    interactions,
    load_interactions,
    purchase_lines,
    temporal_split,
)
from supplyml.recommending.metrics import evaluate, ranking_metrics
from supplyml.recommending.peers import ALS, EASE, PersonalFrequency, Popularity, ease_weights

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- metrics, by hand


def test_metrics_on_two_customers_by_hand():
    # A bought x, y before; in the window x (repeat) and z (new). Its list: z q x -> hits at ranks 1 and 3.
    #   recall = 2/2 = 1; DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) = 1.6309 -> NDCG 0.9197
    #   AP@10 = (P@1 + P@3) / min(10, 2) = (1 + 2/3) / 2 = 0.8333
    # B bought y before; in the window y (repeat) and w (new). Its list: q w -> a hit at rank 2.
    #   recall = 1/2; DCG = 1/log2(3) = 0.6309 -> NDCG 0.3869; AP@10 = (P@2 = 1/2) / 2 = 0.25
    rankings = {"A": ["z", "q", "x"], "B": ["q", "w"]}
    relevant = {"A": {"x", "z"}, "B": {"y", "w"}}
    history = {"A": {"x", "y"}, "B": {"y"}}
    r = evaluate(rankings, relevant, history, catalogue_size=10)
    ndcg_a, ndcg_b = 1.5 / (1 + 1 / math.log2(3)), (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert r["all"]["recall@10"] == pytest.approx((1 + 0.5) / 2)
    assert r["all"]["recall@20"] == pytest.approx(0.75)
    assert r["all"]["ndcg@10"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert r["all"]["hit@10"] == 1.0
    assert r["all"]["map@10"] == pytest.approx((5 / 6 + 0.25) / 2)
    assert r["all"]["coverage@10"] == pytest.approx(4 / 10)  # z q x w
    assert r["all"]["customers"] == 2
    # repeat: A's relevant is {x} (rank 3 of the same list): recall 1, NDCG 1/log2(4) = 0.5, AP 1/3.
    #         B's is {y}, not in its list: all 0.
    assert r["repeat"]["recall@10"] == pytest.approx(0.5)
    assert r["repeat"]["ndcg@10"] == pytest.approx(0.25)
    assert r["repeat"]["hit@10"] == pytest.approx(0.5)
    assert r["repeat"]["map@10"] == pytest.approx(1 / 6)
    # new: A's {z} at rank 1 (NDCG 1, AP 1), B's {w} at rank 2 (NDCG 1/log2(3), AP 1/2).
    assert r["new"]["recall@10"] == pytest.approx(1.0)
    assert r["new"]["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert r["new"]["map@10"] == pytest.approx(0.75)
    assert r["new"]["customers"] == r["repeat"]["customers"] == 2


def test_metrics_cut_at_k_and_count_missing_lists_as_misses():
    ranked = [f"i{j}" for j in range(12)]
    r = ranking_metrics({"A": ranked}, {"A": {"i10"}, "B": {"i0"}, "C": set()}, catalogue_size=100)
    assert r["customers"] == 2  # C has nothing to find; B has no list: all zeros
    assert r["recall@10"] == 0 and r["hit@10"] == 0 and r["ndcg@10"] == 0
    assert r["recall@20"] == pytest.approx(0.5)  # A's item at rank 11
    assert r["coverage@10"] == pytest.approx(10 / 100)


def test_ndcg_ideal_is_over_min_k_and_relevant():
    # 12 relevant, the first 10 ranked all hits: ideal DCG over 10 ranks, so NDCG = 1; recall 10/12.
    ranked = [f"i{j}" for j in range(20)]
    r = ranking_metrics({"A": ranked}, {"A": {f"i{j}" for j in range(12)}}, catalogue_size=20)
    assert r["ndcg@10"] == pytest.approx(1.0) and r["map@10"] == pytest.approx(1.0)
    assert r["recall@10"] == pytest.approx(10 / 12) and r["recall@20"] == pytest.approx(1.0)


# ---------------------------------------------------------------- EASE^R


def test_ease_matches_its_closed_form_and_per_item_ridge():
    X = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=float)
    l2 = 1.0
    P = np.linalg.inv(X.T @ X + l2 * np.eye(3))
    expected = np.eye(3) - P @ np.diag(1 / np.diag(P))
    B = ease_weights(X, l2)
    np.testing.assert_allclose(B, expected, atol=1e-12)
    np.testing.assert_allclose(np.diag(B), 0, atol=1e-12)
    # With diag(B) = 0, column j is the ridge regression of item j on the other items (Steck 2019).
    for j in range(3):
        others = [i for i in range(3) if i != j]
        Xo = X[:, others]
        np.testing.assert_allclose(B[others, j], np.linalg.solve(Xo.T @ Xo + l2 * np.eye(2), Xo.T @ X[:, j]), atol=1e-12)


def test_ease_peer_scores_are_profile_times_weights(tmp_path):
    frame = _frame(
        [
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u2", "b", 1),
            ("u2", "c", 3),
            ("u3", "a", 2),
            ("u3", "c", 2),
            ("u4", "a", 3),
            ("u4", "b", 3),
            ("u4", "c", 3),
            ("u4", "a", 5),
        ]
    )
    model = EASE(l2=1.0).fit(frame, ["a", "b", "c"])
    X = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=float)  # repeat days count once
    np.testing.assert_allclose(model.score(["u1", "u2", "u3", "u4"]), X @ ease_weights(X, 1.0), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "ease")
    np.testing.assert_array_equal(load(tmp_path / "ease").score(["u1", "u4"]), model.score(["u1", "u4"]))


# ---------------------------------------------------------------- data


def _raw(rows):
    return pd.DataFrame(
        rows, columns=["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
    )


def test_cancellations_and_non_products_are_handled_as_on_the_demand_side():
    cfg = DataConfig(non_product_codes=["POST", "M"], non_product_prefixes=["gift_0001"])
    raw = _raw(
        [
            ("536365", "85123a ", "HEART", 10, "2011-01-03 08:26", 2.5, 17850.0, "UK"),
            ("C536366", "85123A", "HEART", -4, "2011-01-03 09:00", 2.5, 17850.0, "UK"),  # offsets 4 of the 10
            ("C536367", "85123A", "HEART", -3, "2011-01-03 10:00", 2.5, 13047.0, "UK"),  # another customer's: no effect
            ("536368", "22633", "HAND WARMER", 6, "2011-01-03 10:00", 1.0, 13047.0, "UK"),
            ("C536369", "22633", "HAND WARMER", -6, "2011-01-03 11:00", 1.0, 13047.0, "UK"),  # all cancelled
            ("536370", "22633", "HAND WARMER", 2, "2011-01-04 10:00", 1.0, 13047.0, "UK"),  # a later day stays
            ("536371", "POST", "POSTAGE", 1, "2011-01-03 10:00", 18.0, 13047.0, "UK"),
            ("536372", "gift_0001_20", "VOUCHER", 1, "2011-01-03 10:00", 20.0, 13047.0, "UK"),
            ("536373", "21730", "LANTERN", 6, "2011-01-03 10:00", 0.0, 13047.0, "UK"),  # price 0: an adjustment
            ("536374", "21730", "LANTERN", 6, "2011-01-03 10:00", 4.0, None, "UK"),  # no customer: no feedback
        ]
    )
    frame = interactions(purchase_lines(raw, cfg))
    got = {(r.customer_id, r.sku, str(r.ds.date())): (r.quantity, r.value) for r in frame.itertuples()}
    assert got == {("17850", "85123A", "2011-01-03"): (6.0, 15.0), ("13047", "22633", "2011-01-04"): (2.0, 2.0)}


def test_temporal_split_keeps_the_future_out_of_training():
    days = pd.date_range("2011-01-01", periods=100)
    frame = pd.DataFrame({"customer_id": ["u"] * 100, "sku": ["a"] * 100, "ds": days, "quantity": 1.0, "value": 1.0})
    s = temporal_split(frame, test_days=28, val_days=28)
    assert s.train["ds"].max() < s.val["ds"].min() <= s.val["ds"].max() < s.test["ds"].min()
    assert list(s.test["ds"]) == list(days[-28:]) and list(s.val["ds"]) == list(days[-56:-28])
    assert len(s.train) + len(s.val) + len(s.test) == 100 and s.test_start == days[-28]
    with pytest.raises(ValueError, match="too short"):
        temporal_split(frame.iloc[-50:], test_days=28, val_days=28)


def test_temporal_split_on_the_online_retail_file():
    cfg = load_config()
    s = temporal_split(load_interactions(cfg, str(REPO)).frame, cfg.recommend.test_days, cfg.recommend.val_days)
    assert s.train["ds"].max() < s.val_start <= s.val["ds"].min() and s.val["ds"].max() < s.test_start
    assert s.test_start == s.end - pd.Timedelta(days=27) and s.test["ds"].min() >= s.test_start
    assert s.end == pd.Timestamp("2011-12-09")
    assert not s.fit["sku"].isin(cfg.data.non_product_codes).any()


# ---------------------------------------------------------------- peers


def _frame(rows, start="2011-01-01"):
    """(customer, sku, day number) -> interactions; day 1 is `start`."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "sku": [r[1] for r in rows],
            "ds": [pd.Timestamp(start) + pd.Timedelta(days=r[2] - 1) for r in rows],
            "quantity": 1.0,
            "value": 1.0,
        }
    )


TINY = _frame(
    [
        ("u1", "a", 30),
        ("u2", "a", 29),
        ("u3", "b", 28),  # the last 7 days (25..31)
        ("u1", "c", 1),
        ("u2", "c", 2),
        ("u3", "c", 3),
        ("u1", "d", 1),
        ("u1", "d", 5),
        ("u3", "e", 31),
    ]
)
ITEMS = ["a", "b", "c", "d"]  # e is outside the catalogue: ignored


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_top_k_is_the_head_of_a_stable_descending_sort(k):
    """Against numpy's full stable sort, on rows full of ties (integer scores), -inf and NaN."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, (300, 40)).astype(float)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[0] = -np.inf  # a row with no finite score
    scores[1, :] = np.nan
    np.testing.assert_array_equal(top_k(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])
    assert top_k(np.array([[1.0, 3.0, 3.0, 2.0]]), 2).tolist() == [[1, 2]]  # by hand: the tie in column order


def test_popularity_ranks_recent_buyers_then_all_time():
    # Recent buyers: a 2, b 1, c 0, d 0; ties broken by buyers ever: c 3 > d 1.
    model = Popularity(popularity_days=7).fit(TINY, ITEMS)
    recs = model.recommend(["u1", "stranger"], k=4)
    assert [[s for s, _ in lst] for lst in recs] == [["a", "b", "c", "d"]] * 2
    assert [s for s, _ in model.recommend(["u2"], k=2, exclude={"a"})[0]] == ["b", "c"]


def test_personal_frequency_puts_own_items_first_then_popularity():
    # u1 bought d on 2 days, a and c on 1 each (a is more popular than c), never b.
    model = PersonalFrequency(popularity_days=7).fit(TINY, ITEMS)
    recs = model.recommend(["u1", "u3", "nobody"], k=4)
    assert [s for s, _ in recs[0]] == ["d", "a", "c", "b"]
    assert [s for s, _ in recs[1]] == ["b", "c", "a", "d"]  # u3: b, c (b more popular), then a, d
    assert [s for s, _ in recs[2]] == ["a", "b", "c", "d"]
    assert recs.fallback == [None, None, FALLBACK]
    assert [s for s, _ in model.recommend(["u1"], k=4, exclude_purchased=True)[0]] == ["b"]


def test_unknown_customers_fall_back_to_popularity_and_say_so():
    model = EASE(l2=10.0, popularity_days=7).fit(TINY, ITEMS)
    recs = model.recommend(["u2", "new-customer"], k=3)
    assert recs.fallback == [None, "popularity"]
    assert recs[1] == [(s, pytest.approx(float(v))) for s, v in zip(["a", "b", "c"], sorted(model.popularity)[::-1])]
    np.testing.assert_array_equal(model.score(["new-customer"])[0], model.popularity)
    assert model.known(["u2", "new-customer"]).tolist() == [True, False]


def test_als_is_reproducible_from_its_seed_and_survives_save_load(tmp_path):
    a = ALS(factors=4, iterations=3, seed=1).fit(TINY, ITEMS)
    b = ALS(factors=4, iterations=3, seed=1).fit(TINY, ITEMS)
    np.testing.assert_array_equal(a.score(["u1", "u2"]), b.score(["u1", "u2"]))
    a.save(tmp_path / "als")
    again = load(tmp_path / "als")
    assert again.params == a.params and again.items == ITEMS
    np.testing.assert_array_equal(again.score(["u1", "x"]), a.score(["u1", "x"]))


# ---------------------------------------------------------------- the bench, end to end on a small file


def _shop(path: Path, seed: int = 0) -> None:
    """Order lines of 40 customers over 150 days; each favours a few of 25 SKUs and re-buys them."""
    rng = np.random.default_rng(seed)
    rows, invoice = [], 500000
    days = pd.date_range("2011-01-01", periods=150)
    for c in range(40):
        favourites = rng.choice(25, size=5, replace=False)
        for day in rng.choice(len(days), size=12, replace=False):
            invoice += 1
            for sku in rng.choice(favourites, size=2, replace=False):
                rows.append(
                    (
                        str(invoice),
                        f"SKU{sku:02d}",
                        f"item {sku}",
                        int(rng.integers(1, 12)),
                        f"{days[day].date()} 10:00",
                        1.5,
                        20000.0 + c,
                        "UK",
                    )
                )
    _raw(rows).to_csv(path, index=False)


def test_bench_writes_table_results_and_rankings(tmp_path):
    _shop(tmp_path / "lines.csv")
    cfg = Config.model_validate(
        {
            "data": {"path": str(tmp_path / "lines.csv")},
            "registry": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_location": str(tmp_path / "art")},
            "tune": {"storage": f"sqlite:///{tmp_path}/optuna.db", "n_trials": 2, "max_epochs": 1},
            "recommend": {
                "test_days": 21,
                "val_days": 21,
                "k": 10,
                "seeds": [0, 1],
                "params": {"architecture": "bpr", "dim": 8, "epochs": 2, "batch_size": 64, "accelerator": "cpu"},
                "search_space": {"dim": [4, 16]},
                "grid": {
                    "ease": {"l2": [1.0, 10.0]},
                    "als": {"factors": [4], "iterations": [3]},
                    "bpr": {"factors": [4], "iterations": [5]},
                },
            },
        }
    )
    result = run_bench(cfg, tmp_path / "out")
    table = result["table"]
    ablations = ["blend with segments", "blend without recency", "deepfm", "deepfm, new items x e^2", "deepfm, new items x e^3"]
    assert list(table.index) == [*cfg.recommend.models, *ablations]
    summary = json.loads((tmp_path / "out/results.json").read_text())
    # The product's models take the Optuna study's best recipe; an ablation is that recipe with a part off.
    assert len(summary["validation_grid"]["blend"]) == 2 and summary["chosen"]["network"] == summary["chosen"]["blend"]
    assert summary["chosen"]["blend with segments"] == {**summary["chosen"]["blend"], "segment_weight": 0.5}
    assert summary["chosen"]["deepfm, new items x e^2"] == {
        **summary["chosen"]["blend"],
        **{"architecture": "deepfm", "dim": 16, "lr": 1e-3, "epochs": 3, "repeat_slots": 0, "popularity_weight": 0.0},
        "new_item_boost": 2.0,
    }
    assert table.loc["blend", "seeds"] == 2
    assert {"ndcg@10/all", "recall@20/repeat", "map@10/new", "coverage@10/all", "wall_s"} <= set(table)
    assert table.loc["als", "seeds"] == 2 and "ndcg@10/all_std" in table and table.loc["ease", "seeds"] == 1
    assert summary["chosen"]["ease"]["l2"] in (1.0, 10.0) and len(summary["validation_grid"]["ease"]) == 2
    assert summary["split"]["test_start"] == "2011-05-10"  # 21 days ending on the last day, 2011-05-30
    ranks = pd.read_parquet(tmp_path / "out/rankings.parquet")
    assert list(ranks.columns) == ["model", "customer_id", "rank", "sku", "score"]
    assert set(ranks["model"]) == set(table.index) and ranks["rank"].max() == 10
    assert "repeat items" in format_table(table)


def test_item_and_customer_tables_read_as_of_a_day():
    from supplyml.recommending.interactions import customer_table, item_table

    raw = _raw(
        [
            ("1", "A", "OLD NAME", 1, "2011-01-01 10:00", 1.0, "17850", "UK"),
            ("2", "A", "NEW NAME", 1, "2011-02-01 10:00", 3.0, "17850.0", "France"),
            ("3", "A", "NEW NAME", 1, "2011-02-02 10:00", 2.0, 12.0, "Spain"),
        ]
    )
    lines = purchase_lines(raw, DataConfig())
    assert sorted(lines["customer_id"].unique()) == ["12", "17850"]  # 17850.0 and "17850" are one customer
    items = item_table(lines).set_index("sku")
    assert items.loc["A", "description"] == "NEW NAME" and items.loc["A", "price"] == 2.0
    assert item_table(lines, until=pd.Timestamp("2011-01-31")).set_index("sku").loc["A", "description"] == "OLD NAME"
    assert customer_table(lines).set_index("customer_id")["country"].to_dict() == {"12": "Spain", "17850": "France"}


def test_a_model_name_is_registered_once():
    from supplyml.recommending.base import Recommender

    with pytest.raises(TypeError, match="taken"):
        type("OtherEASE", (Recommender,), {"name": "ease", "_fit": lambda s, X, f: None, "_score": lambda s, r: r})


def _purchases(rows):
    return pd.DataFrame(
        [
            {"customer_id": c, "sku": s, "ds": pd.Timestamp("2011-01-01") + pd.Timedelta(days=d), "quantity": 1.0, "value": 1.0}
            for c, s, d in rows
        ]
    )


@pytest.mark.parametrize("architecture", ["bpr", "sequence"])
def test_the_network_learns_who_buys_what_and_survives_save_and_load(tmp_path, architecture):
    from supplyml.recommending import load
    from supplyml.recommending.networks import Network

    # Two tastes: customers c0..c9 buy A then B, customers d0..d9 buy X then Y.
    rows = [(f"{g}{i}", sku, day) for i in range(10) for g, skus in (("c", "AB"), ("d", "XY")) for day, sku in enumerate(skus)]
    items = ["A", "B", "X", "Y"]
    model = Network(architecture=architecture, dim=8, lr=0.05, epochs=60, batch_size=8, max_len=4, seed=0, accelerator="cpu").fit(
        _purchases(rows), items
    )
    scores = model.score(["c0", "d0"])
    assert scores[0, :2].min() > scores[0, 2:].max() and scores[1, 2:].min() > scores[1, :2].max()
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").score(["c0", "d0", "nobody"]), model.score(["c0", "d0", "nobody"]))


def test_the_blend_puts_the_most_bought_items_first_then_the_network():
    from supplyml.recommending.networks import Blend

    # c0 bought A on three days, B on two, C once; with 2 repeat slots, A and B lead, C is only as good as its score.
    rows = [("c0", "A", d) for d in range(3)] + [("c0", "B", d) for d in range(2)] + [("c0", "C", 5)]
    rows += [(f"o{i}", s, i) for i in range(6) for s in "DE"]
    model = Blend(architecture="bpr", dim=4, lr=0.05, epochs=5, batch_size=8, seed=0, repeat_slots=2, accelerator="cpu").fit(
        _purchases(rows), list("ABCDE")
    )
    (ranked,) = model.recommend(["c0"], k=5)
    assert [s for s, _ in ranked[:2]] == ["A", "B"] and ranked[1][1] >= 2.0 > ranked[2][1]


def test_the_blend_without_repeat_places_is_the_networks_ranking():
    from supplyml.recommending.networks import Blend, Network

    rows = [(f"c{i}", s, d) for i in range(6) for d, s in enumerate("ABC"[: 1 + i % 3])]
    args = {"architecture": "bpr", "dim": 4, "lr": 0.05, "epochs": 3, "batch_size": 8, "seed": 0, "accelerator": "cpu"}
    blend = Blend(**args, repeat_slots=0).fit(_purchases(rows), list("ABCD"))
    network = Network(**args).fit(_purchases(rows), list("ABCD"))
    customers = [f"c{i}" for i in range(6)]
    assert [[s for s, _ in r] for r in blend.recommend(customers, 4)] == [
        [s for s, _ in r] for r in network.recommend(customers, 4)
    ]


def test_recency_weighting_puts_a_recent_habit_above_an_older_more_frequent_one():
    from supplyml.recommending.networks import Blend

    # c0 bought A on days 0-2 and B on days 98-99. Unweighted A leads (3 days to 2); with a 10-day
    # half-life A weighs 0.5^9.9 + 0.5^9.8 + 0.5^9.7 ~ 0.004 and B 0.5^0.1 + 1 ~ 1.93.
    rows = [("c0", "A", d) for d in range(3)] + [("c0", "B", d) for d in (98, 99)] + [("o1", "C", 99)]
    args = {"architecture": "bpr", "dim": 4, "epochs": 1, "batch_size": 8, "seed": 0, "accelerator": "cpu", "repeat_slots": 2}
    first = {
        hl: Blend(**args, half_life_days=hl).fit(_purchases(rows), list("ABC")).recommend(["c0"], 2)[0][0][0] for hl in (0, 10)
    }
    assert first == {0: "A", 10: "B"}


def test_segment_popularity_ranks_what_a_customers_own_segment_buys(tmp_path):
    from supplyml.recommending.networks import Blend

    # Six frequent customers (10 days each) buy H, six one-off customers buy L once; everyone buys G once.
    # Globally H and L tie (6 buyers each); within each RFM segment its own item leads.
    rows = [(f"h{i}", "H", d) for i in range(6) for d in range(10, 20)] + [(f"l{i}", "L", 5) for i in range(6)]
    rows += [(c, "G", 20) for c in [*(f"h{i}" for i in range(6)), *(f"l{i}" for i in range(6))]]
    args = {
        "architecture": "bpr",
        "dim": 4,
        "epochs": 1,
        "batch_size": 8,
        "seed": 0,
        "accelerator": "cpu",
        "repeat_slots": 0,
        "popularity_weight": 100.0,
    }
    model = Blend(**args, segment_weight=1.0).fit(_purchases(rows), list("GHLX"))
    assert (
        len(set(model.segment_of)) == 2
        and model.segment_of[model._customer_index["h0"]] != model.segment_of[model._customer_index["l0"]]
    )
    for customer, own, other in (("h0", "H", "L"), ("l3", "L", "H")):
        ranked = [s for s, _ in model.recommend([customer], 4)[0]]
        assert ranked.index(own) < ranked.index(other), (customer, ranked)
    model.save(tmp_path / "m")
    assert load(tmp_path / "m").recommend(["h0", "l3"], 4) == model.recommend(["h0", "l3"], 4)


def test_every_recommend_study_tries_the_configured_blend_and_deepfms_own_list_first():
    from supplyml.recommending.search import RecommendSearch

    blend, deepfm = RecommendSearch(None, Config(), "md5").first_trials()
    assert blend == {
        "architecture": "bpr",
        "dim": 64,
        "bpr_lr": 0.01,
        "repeat_slots": 10,
        "half_life_days": 120,
        "popularity_weight": 1.0,
        "segment_weight": 0.0,
    }
    # DeepFM's own list: no fixed habit places, no popularity term, no boost, the narrowest width searched.
    assert deepfm == {
        "architecture": "deepfm",
        "dim": 32,
        "deepfm_lr": 1e-3,
        "repeat_slots": 0,
        "half_life_days": 120,
        "popularity_weight": 0.0,
        "segment_weight": 0.0,
        "new_item_boost": 0.0,
    }
    only_bpr = load_config(overrides=["recommend.search_space.architecture=[bpr]"])
    assert RecommendSearch(None, only_bpr, "md5").first_trials() == [blend]


def test_a_configured_recipe_outside_the_search_space_is_a_config_error():
    from supplyml.config import ConfigError

    with pytest.raises(ConfigError, match=r"architecture=sequence is not in search_space.architecture=\['bpr', 'deepfm'\]"):
        load_config(overrides=["recommend.params.architecture=sequence"])
    with pytest.raises(ConfigError, match=r"repeat_slots=12 is outside search_space.repeat_slots=\[0, 10\]"):
        load_config(overrides=["recommend.params.repeat_slots=12"])
    cfg = load_config(overrides=["recommend.params.architecture=sequence", "recommend.search_space.architecture=[bpr,sequence]"])
    assert cfg.recommend.params["architecture"] == "sequence"
