"""Throughput and latency of the served champion, adaptive batching off and on.

Serves the champion's Bento of the local `.supplyml` store (or, without one, a small model built the way
tests/test_serving.py builds it, in a temporary store) with the very command `make serve` runs, once with
`serving.batching=false` and once with `true` (SUPPLYML_SET in the server's environment). Against each,
1, 8 and 32 closed-loop aiohttp clients send single-SKU /forecast and single-item /replenish requests
(SKUs in turn) for a fixed time, and, when the Bento holds a recommender, /recommend (k = 10, the data's
most active customers in turn) and /similar (k = 10). Prints req/s, p50/p95/p99 and errors, and writes JSON.

    .venv/bin/python benchmarks/serving.py [--seconds 20] [--clients 1 8 32] [--out benchmarks/results/serving.json]

The load generator shares the machine with the server: on a small machine that is part of the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: serving/ is beside supplyml/

from serving.package import NoChampionError, bentoml_env, serve_command  # noqa: E402
from supplyml.config import Config, load_config  # noqa: E402

log = logging.getLogger("benchmarks.serving")
HORIZON = 14


def local_champion() -> Config | None:
    """The default config when its store has a champion to serve, else None."""
    cfg = load_config().resolved(ROOT)
    if not Path(cfg.serving.bentoml_home).exists():
        return None
    os.environ.update(bentoml_env(cfg))
    try:
        serve_command(cfg)
    except NoChampionError:
        import mlflow

        mlflow.set_tracking_uri(None)  # it exported MLFLOW_TRACKING_URI, which outranks a config's store
        return None
    return cfg


def generated_panel(skus: int) -> pd.DataFrame:
    """`skus` series (10 stores x skus/10 items) of the team's generator (`make_multistore.py`), one year
    daily, in the served model's columns."""
    from make_multistore import MAPPING, Shape, generate

    frame = generate(0, Shape(stores=10, items=max(1, skus // 10), start="2023-01-01", end="2023-12-31"))
    frame = frame.rename(columns={v: k for k, v in MAPPING.items()})
    frame["unique_id"] = frame["unique_id"].astype(str) + "@" + frame.pop("location").astype(str)
    return frame[["unique_id", "ds", "y", "price", "promo", "event"]]


def small_champion(tmp: Path, skus: int | None = None) -> Config:
    """A small network + window-average combination, as tests/serving_stack.py builds one, registered as
    champion in a store under `tmp` and packaged: over 6 hand-made series, or over `skus` generated ones."""
    import mlflow

    from serving.package import package
    from supplyml.forecasting.base import Calibration
    from supplyml.forecasting.combination import Combination
    from supplyml.forecasting.networks import NetworkForecaster
    from supplyml.forecasting.statistical import Statistical
    from supplyml.registry import register
    from supplyml.tracking import log_forecaster, setup_tracking

    cfg = load_config(
        overrides=[
            f"registry.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"registry.artifact_location={tmp}/mlartifacts",
            f"serving.bentoml_home={tmp}/bentoml",
            "serving.max_horizon=30",
            "model.max_epochs=1",
            "model.hidden_size=8",
            "model.num_layers=1",
            "model.context_length=28",
            "model.num_samples=50",
            "model.accelerator=cpu",
            "inventory.num_sample_paths=200",
        ]
    )
    if skus is None:
        rng = np.random.default_rng(0)
        days = pd.date_range("2011-01-01", periods=120)
        weekly = np.array([1.0, 1.2, 1.4, 1.2, 1.0, 0.2, 0.6])
        panel = pd.concat(
            [
                pd.DataFrame(
                    {
                        "unique_id": f"SKU-{i}",
                        "ds": days,
                        "price": 2.0 + i,
                        "y": rng.poisson(level * weekly[days.dayofweek]).astype(float),
                    }
                )
                for i, level in enumerate([0.5, 2, 5, 10, 20, 40])
            ],
            ignore_index=True,
        )
    else:
        panel = generated_panel(skus)
    network = NetworkForecaster.fit(panel, cfg.model, horizon=HORIZON, seed=cfg.seed)[0]
    average = Statistical.fit(panel, "window_average", HORIZON)
    model = Combination({"network": network, "window_average": average}, {"network": 0.5, "window_average": 0.5}, panel)
    model.calibration = Calibration(rho=0.3, total=([0.01, 0.5, 0.99], [0.02, 0.55, 0.995]), days=10)
    os.environ.update(bentoml_env(cfg))
    setup_tracking(cfg)
    with mlflow.start_run():
        uri = log_forecaster(model, cfg)
    version = register(uri, cfg.registry.model_name, {"dvc_md5": "benchmark", "git_commit": "benchmark"})
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(cfg.registry.model_name, "champion", version.version)
    package(cfg, {"forecast": client.get_model_version(cfg.registry.model_name, version.version)})
    return cfg


@contextlib.contextmanager
def server(cfg: Config, batching: bool, log_path: Path, started: dict | None = None):
    """`make serve`'s command on a free port; `started` gets the seconds from launch to ready and the
    server's resident memory (its process tree) then."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"host": "127.0.0.1", "port": port})})
    env = {**os.environ, **bentoml_env(cfg), "SUPPLYML_SET": f"serving.batching={str(batching).lower()}"}
    with log_path.open("w") as out:
        proc = subprocess.Popen(serve_command(cfg), env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    launched = time.monotonic()
    try:
        deadline = launched + 300
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve did not become ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        if started is not None:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            started["start_s"] = round(time.monotonic() - launched, 1)
            started["rss_mb"] = round(sum(p.memory_info().rss for p in tree) / 2**20)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def customers(cfg: Config, n: int = 64) -> list[str]:
    """The `n` customers with the most purchase days in the configured order lines."""
    from supplyml.recommending.interactions import load_interactions

    frame = load_interactions(cfg, str(ROOT)).frame
    return frame["customer_id"].value_counts().index[:n].tolist()


def bodies(endpoint: str, skus: list[str], who: list[str] = ()) -> list[dict]:
    if endpoint == "recommend":
        return [{"customer_id": c, "k": 10, "exclude_purchased": False} for c in who]
    if endpoint == "similar":
        return [{"sku": s, "k": 10} for s in skus]
    if endpoint == "forecast":
        return [{"skus": [s], "horizon": HORIZON, "quantiles": [0.1, 0.5, 0.9]} for s in skus]
    return [
        {
            "items": [
                {
                    "sku": s,
                    "on_hand": 20,
                    "on_order": 0,
                    "lead_time_days": HORIZON // 2,
                    "review_period_days": HORIZON // 2,
                    "service_level": 0.95,
                }
            ]
        }
        for s in skus
    ]


async def closed_loop(url: str, payloads: list[dict], clients: int, seconds: float, headers: dict) -> dict:
    """`clients` loops, each sending its next request as soon as the last answer arrives."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), headers=headers) as session:
        end = time.perf_counter() + seconds

        async def client(k: int) -> None:
            n = k
            while time.perf_counter() < end:
                start = time.perf_counter()
                try:
                    async with session.post(url, json=payloads[n % len(payloads)]) as r:
                        await r.read()
                        if r.status != 200:
                            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                            continue
                except aiohttp.ClientError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - start)
                n += clients

        began = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    q = np.percentile(ms, [50, 95, 99]) if len(ms) else [float("nan")] * 3
    return {
        "requests": len(ms),
        "req_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(q[0]), 1),
        "p95_ms": round(float(q[1]), 1),
        "p99_ms": round(float(q[2]), 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def one_size(n: int, seconds: float, warmup: float) -> dict:
    """`many_skus`'s figures for a generated panel of `n` series."""
    with tempfile.TemporaryDirectory() as tmp:
        began = time.monotonic()
        cfg = small_champion(Path(tmp), n)
        built = time.monotonic() - began
        started: dict = {}
        with server(cfg, cfg.serving.batching, Path(tmp) / "serve.log", started) as base:
            meta = requests.get(f"{base}/metadata", timeout=60).json()
            payloads = bodies("forecast", meta["skus"][:: max(1, len(meta["skus"]) // 64)][:64])
            asyncio.run(closed_loop(f"{base}/forecast", payloads, 8, warmup, {}))
            load = asyncio.run(closed_loop(f"{base}/forecast", payloads, 8, seconds, {}))
        began = time.monotonic()
        # The store comes from MLFLOW_TRACKING_URI, which setup_tracking exported for this process.
        command = [sys.executable, "-m", "cli", "predict", "--out", f"{tmp}/all.parquet", "--horizon", str(HORIZON)]
        sets = ["--set", f"serving.max_horizon={cfg.serving.max_horizon}"]
        predict = subprocess.run([*command, *sets], cwd=ROOT, capture_output=True, text=True)
        if predict.returncode:
            raise RuntimeError(predict.stdout + predict.stderr)
        predicted = time.monotonic() - began
        written = pd.read_parquet(f"{tmp}/all.parquet", columns=["sku"])["sku"].nunique()
    row = {"skus": len(meta["skus"]), "build_s": round(built, 1), **started, "forecast_8_clients": load}
    return {**row, "predict_s": round(predicted, 1), "predict_skus": int(written)}


def many_skus(sizes: list[int], seconds: float, warmup: float, out: Path) -> int:
    """Issue 22's serving figures per panel size: start to ready, /forecast at 8 clients (batching as
    configured, on by default) and `supplyml predict` of every SKU, on the same small recipe. Each size
    runs in a process of its own: a process can use one BentoML home only."""
    rows = []
    for n in sizes:
        with tempfile.NamedTemporaryFile(suffix=".json") as row:
            args = ["--one-size", str(n), "--seconds", str(seconds), "--warmup", str(warmup), "--out", row.name]
            subprocess.run([sys.executable, __file__, *args], check=True)
            rows.append(json.loads(Path(row.name).read_text()))
    report = {
        "setup": {
            "recipe": "network (mlp, hidden 8, 1 epoch) + window average, as tests/serving_stack.py builds it",
            "panel": "make_multistore.generate, 10 stores, 2023 daily",
            "request": f"one SKU per request, horizon {HORIZON}, 64 SKUs spread over the panel in turn",
            "seconds_per_run": seconds,
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "load_generator": "aiohttp closed loop, same machine",
        },
        "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    lines = [
        "| SKUs | start to ready s | server RSS MB | /forecast req/s | p50 ms | p99 ms | errors | predict s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['skus']:,} | {r['start_s']} | {r['rss_mb']:,} | {r['forecast_8_clients']['req_per_s']} "
        f"| {r['forecast_8_clients']['p50_ms']} | {r['forecast_8_clients']['p99_ms']} | {r['forecast_8_clients']['errors']} "
        f"| {r['predict_s']} |"
        for r in rows
    ]
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per run (default: 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each endpoint's runs")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/serving.json (serving-skus.json)")
    parser.add_argument(
        "--skus", type=int, nargs="+", help="instead: start, /forecast and predict on generated panels of these sizes"
    )
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # one of --skus, in its own process
    args = parser.parse_args(argv)
    if args.one_size:
        args.out.write_text(json.dumps(one_size(args.one_size, args.seconds, args.warmup)))
        return 0
    if args.skus:
        return many_skus(args.skus, args.seconds, args.warmup, args.out or ROOT / "benchmarks" / "results" / "serving-skus.json")
    args.out = args.out or ROOT / "benchmarks" / "results" / "serving.json"

    with tempfile.TemporaryDirectory() as tmp:
        cfg = local_champion()
        source = "champion of .supplyml"
        if cfg is None:
            log.info("no champion in .supplyml: building a small one under %s", tmp)
            cfg, source = small_champion(Path(tmp)), "small model built as tests/test_serving.py does"
        headers = {"Authorization": f"Bearer {os.environ['SUPPLYML_API_TOKEN']}"} if os.environ.get("SUPPLYML_API_TOKEN") else {}
        results, meta, who = [], {}, []
        for batching in (False, True):
            with server(cfg, batching, Path(tmp) / f"serve-{batching}.log") as base:
                meta = requests.get(f"{base}/metadata", headers=headers, timeout=30).json()
                skus = meta["skus"][:64]
                endpoints = ["forecast", "replenish"]
                if meta.get("recommender"):  # not batched: the same figures with batching off and on
                    endpoints += ["recommend", "similar"]
                    who = who if batching else customers(cfg)
                for endpoint in endpoints:
                    payloads = bodies(endpoint, skus, who if meta.get("recommender") else ())
                    asyncio.run(closed_loop(f"{base}/{endpoint}", payloads, 8, args.warmup, headers))
                    for clients in args.clients:
                        row = asyncio.run(closed_loop(f"{base}/{endpoint}", payloads, clients, args.seconds, headers))
                        results.append(
                            {
                                "batching": batching,
                                "endpoint": endpoint,
                                "clients": clients,
                                **row,
                                "load_average_1m": round(os.getloadavg()[0], 2),
                            }
                        )  # others on the machine show here
                        log.info("%s", results[-1])
    report = {
        "setup": {
            "source": source,
            "model": f"{meta.get('model_name')} version {meta.get('model_version')}",
            "bento": meta.get("bento"),
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "seconds_per_run": args.seconds,
            "request": f"one SKU per request, horizon {HORIZON}; replenish L = R = {HORIZON // 2}; recommend and similar k = 10",
            "recommender": (meta.get("recommender") or {}).get("model_version"),
            "load_generator": "aiohttp closed loop, same machine",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(results))
    print(f"wrote {args.out}")
    return 0


def table(results: list[dict]) -> str:
    lines = [
        "| batching | endpoint | clients | req/s | p50 ms | p95 ms | p99 ms | errors | load 1m |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {'on' if r['batching'] else 'off'} | {r['endpoint']} | {r['clients']} | {r['req_per_s']} | {r['p50_ms']} "
        f"| {r['p95_ms']} | {r['p99_ms']} | {r['errors']} | {r['load_average_1m']} |"
        for r in results
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
