"""Operating the server, on this module's own real `bentoml serve` started with SUPPLYML_API_TOKEN (and
batching off, so the unbatched path is served too): the token guards all but the probes and is never
logged, and a worker killed under load comes back and answers."""

import os
import secrets
import signal
import subprocess
import threading
import time

import psutil
import pytest
import requests
from serving_stack import ITEM, SKUS, free_port, serve

pytestmark = pytest.mark.slow
TOKEN = secrets.token_urlsafe(24)  # made per run: never a value in the repo
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_SKUS = 3
FORECAST = {"skus": SKUS[:2], "horizon": 5, "quantiles": [0.1, 0.9]}


def on_own_port(cfg):
    """The serving stack's config on a port of its own: the shared server holds the stack's."""
    return cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"port": free_port()})})


@pytest.fixture(scope="module")
def guarded(cfg, bento):
    # Started as `make serve SET="--set serving..."` would: the overrides reach the server.
    with serve(
        on_own_port(cfg),
        {"SUPPLYML_API_TOKEN": TOKEN},
        cli=["--set", "serving.batching=false", "--set", f"serving.max_skus={MAX_SKUS}"],
    ) as server:
        yield server


def test_serve_overrides_reach_the_server(guarded):
    base, _, _ = guarded
    body = {"skus": SKUS[: MAX_SKUS + 1], "horizon": 5}
    r = requests.post(f"{base}/forecast", json=body, headers=AUTH, timeout=60)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == f"{MAX_SKUS + 1} skus exceed serving.max_skus = {MAX_SKUS}; split the request"
    body["skus"] = SKUS[:MAX_SKUS]
    assert requests.post(f"{base}/forecast", json=body, headers=AUTH, timeout=60).status_code == 200


CALLS = [
    ("POST", "/forecast", FORECAST),
    ("POST", "/replenish", {"items": [ITEM]}),
    ("GET", "/metadata", None),
    ("GET", "/docs.json", None),
    ("GET", "/", None),
]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["none", "wrong", "basic", "bare"],
)
def test_without_the_token_only_the_probes_answer(guarded, headers):
    base, _, _ = guarded
    for method, path, body in CALLS:
        r = requests.request(method, f"{base}{path}", json=body, headers=headers, timeout=30)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer" and "X-Supplyml-Model" not in r.headers
        assert r.json() == {
            "error": "missing or wrong API token",
            "detail": [
                {
                    "type": "unauthorized",
                    "loc": ["header", "Authorization"],
                    "msg": "send Authorization: Bearer <token>, the token this server was started with",
                }
            ],
        }
    for path in ("/livez", "/readyz", "/metrics"):
        assert requests.get(f"{base}{path}", headers=headers, timeout=30).status_code == 200, path


def test_with_the_token_every_endpoint_answers_and_the_contract_says_bearer(guarded):
    base, _, _ = guarded
    statuses = [requests.request(m, f"{base}{p}", json=b, headers=AUTH, timeout=60).status_code for m, p, b in CALLS]
    assert statuses == [200] * len(CALLS)
    forecasts = requests.post(f"{base}/forecast", json=FORECAST, headers=AUTH, timeout=60).json()["forecasts"]
    assert [f["sku"] for f in forecasts] == SKUS[:2] and all(len(f["mean"]) == 5 for f in forecasts)
    contract = requests.get(f"{base}/docs.json", headers=AUTH, timeout=30).json()
    assert contract["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, method in (("/forecast", "post"), ("/replenish", "post"), ("/metadata", "get")):
        assert contract["paths"][path][method]["security"] == [{"bearer": []}]
        assert "401" in contract["paths"][path][method]["responses"]


def test_the_token_is_never_logged(guarded):
    base, _, log_path = guarded
    for body in (FORECAST, {"skus": [], "horizon": 0}, {"skus": ["NO-SUCH-SKU"], "horizon": 3}):  # 200, 400, 404
        requests.post(f"{base}/forecast", json=body, headers=AUTH, timeout=60)
    log = log_path.read_text()
    assert "path=/forecast" in log and "Exception on /forecast" in log  # the access log and a 400's traceback
    assert TOKEN not in log


def test_batching_off_answers_without_batches(guarded):
    base, _, _ = guarded
    assert requests.post(f"{base}/forecast", json=FORECAST, headers=AUTH, timeout=60).status_code == 200
    assert "adaptive_batch_size_count" not in requests.get(f"{base}/metrics", timeout=30).text


def _worker(server: subprocess.Popen) -> psutil.Process:
    workers = [
        p for p in psutil.Process(server.pid).children(recursive=True) if "_bentoml_impl.worker.service" in " ".join(p.cmdline())
    ]
    assert len(workers) == 1, workers
    return workers[0]


def test_a_worker_killed_under_load_comes_back_and_answers(guarded):
    base, server, _ = guarded
    worker = _worker(server)
    statuses, stop = [], threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                statuses.append(requests.post(f"{base}/forecast", json=FORECAST, headers=AUTH, timeout=60).status_code)
            except requests.RequestException:  # in flight on the killed worker
                statuses.append(None)

    clients = [threading.Thread(target=load) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        deadline = time.monotonic() + 60
        while statuses.count(200) < 20:
            assert time.monotonic() < deadline, statuses[-10:]
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        assert psutil.wait_procs([worker], timeout=30)[1] == []
        before = len(statuses)
        deadline = time.monotonic() + 120
        while statuses[before:].count(200) < 20:  # answers from the new worker, under the same load
            assert time.monotonic() < deadline and server.poll() is None, statuses[-10:]
            time.sleep(0.2)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=90)
    assert _worker(server).pid != worker.pid
    after = [requests.post(f"{base}/replenish", json={"items": [ITEM]}, headers=AUTH, timeout=60) for _ in range(5)]
    assert [r.status_code for r in after] == [200] * 5
    assert all(r.json()["decisions"][0]["sku"] == ITEM["sku"] for r in after)


def test_stopping_supplyml_serve_leaves_no_server_behind(cfg, bento):
    """`supplyml serve` becomes the server (exec), so a process manager's SIGTERM reaches it; as a parent
    that only waited, it left `bentoml serve` and its worker running, orphaned."""
    with serve(on_own_port(cfg), cli=[]) as (_, proc, _):
        server = psutil.Process(proc.pid)
        assert "bentoml" in " ".join(server.cmdline())  # the very process the CLI started as
        tree = [server, *server.children(recursive=True)]
    gone, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
