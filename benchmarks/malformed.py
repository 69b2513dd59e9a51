"""Malformed bodies against a running server (`make serve`): every one must get a 4xx, never a 5xx.

    python benchmarks/malformed.py [--url http://127.0.0.1:3000] [--n 600]

Bodies, seeded: truncated and corrupted valid bodies, wrong types per field, nesting up to 5,000 deep,
huge and non-finite numbers, invalid UTF-8, empty bodies and top-level scalars, spread over the four POST
endpoints. Prints status counts per endpoint and writes benchmarks/results/malformed.json.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import requests

OUT = Path(__file__).parent / "results" / "malformed.json"


def bodies(valid: dict, rng: random.Random) -> list[bytes]:
    text = json.dumps(valid)
    out: list[bytes] = []
    for depth in (100, 1_000, 5_000):  # nesting, alone and inside a field
        out += [b"[" * depth + b"]" * depth, ('{"x": ' + "[" * depth + "]" * depth + "}").encode()]
        out.append(json.dumps({**valid, next(iter(valid)): "__DEEP__"}).replace('"__DEEP__"', "[" * depth + "]" * depth).encode())
    out += [b"", b"null", b"1", b'"text"', b"[]", b"{}", b"\xff\xfe\x00", b"{" * 3, b'{"a": 1,}', b"NaN"]
    for key in valid:  # each field with a value of every wrong kind
        for wrong in (None, True, -1, 1e308, "x" * 10_000, [], {}, [[1]], {"a": {"b": []}}, "\u0000", 2**70):
            out.append(json.dumps({**valid, key: wrong}).encode())
    while len(out) < 150:  # corrupted copies of the valid body: a cut, a flipped character, an inserted one
        i = rng.randrange(len(text))
        kind = rng.choice(("cut", "flip", "insert"))
        broken = text[:i] if kind == "cut" else text[:i] + chr(rng.randrange(32, 127)) + text[i + (kind == "flip") :]
        out.append(broken.encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--n", type=int, default=600, help="bodies in all, spread over the endpoints")
    args = parser.parse_args()
    meta = requests.get(f"{args.url}/metadata", timeout=30).json()
    sku = meta["skus"][0]
    valid = {
        "forecast": {"skus": [sku], "horizon": 7, "quantiles": [0.1, 0.9]},
        "replenish": {"items": [{"sku": sku, "on_hand": 5, "lead_time_days": 3, "review_period_days": 7, "service_level": 0.95}]},
        "recommend": {"customer_id": "12347", "k": 5},
        "similar": {"sku": sku, "k": 5},
    }
    rng = random.Random(0)
    statuses: dict[str, Counter] = {}
    for path, body in valid.items():
        sent = bodies(body, rng)[: args.n // len(valid)]
        statuses[path] = Counter(
            requests.post(f"{args.url}/{path}", data=b, headers={"content-type": "application/json"}, timeout=120).status_code
            for b in sent
        )
    total = sum((c for c in statuses.values()), Counter())
    print(f"{'endpoint':<12} {'bodies':>7} {'4xx':>6} {'5xx':>6}  statuses")
    for path, c in {**statuses, "all": total}.items():
        n4 = sum(v for k, v in c.items() if 400 <= k < 500)
        n5 = sum(v for k, v in c.items() if k >= 500)
        print(f"{path:<12} {sum(c.values()):>7} {n4:>6} {n5:>6}  {dict(sorted(c.items()))}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    counts = {p: {str(k): v for k, v in sorted(c.items())} for p, c in {**statuses, "all": total}.items()}
    OUT.write_text(json.dumps(counts, indent=2) + "\n")


if __name__ == "__main__":
    main()
