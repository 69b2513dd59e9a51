"""Where the per-series work runs: in the step's own process (`compute.engine: local`, the default), or
on a Dask cluster (`compute.engine: dask`) through the Nixtla libraries' own distributed backends
(Fugue), which partition the panel by series: statsforecast fits each partition on a worker, and
mlforecast builds LightGBM's features there and trains one model over all of them.

Dask rather than Ray: it is pure Python and a few MB to install, it is pandas-native, both Nixtla
libraries the stack uses run on it, and a cluster is one scheduler and a worker Deployment
(k8s/base/dask.yaml).

A step opens a `session`; inside it, `nixtla` sends a statsforecast or mlforecast call's frame to the
cluster and brings the result back with the in-process call's rows and types, ordered by series as
statsforecast orders them in-process (mlforecast's readers go by column, not position).
LightGBM trains there through mlforecast's `DistributedMLForecast` (`partitions` says when), and
`map_shared` spreads chunks of work that share one object (batch prediction's SKUs and their model).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from supplyml.config import ComputeConfig

_partitions: list[int] = []  # the open session's number of partitions (empty: in-process)


@contextlib.contextmanager
def session(cfg: ComputeConfig) -> Iterator[None]:
    """Per-series work inside runs on `cfg.engine`: a client of `cfg.scheduler`, or of a local cluster of
    `cfg.workers` processes started for the session. A session inside another one reuses it."""
    if cfg.engine == "local" or _partitions:
        yield
        return
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if cfg.scheduler:
            client = stack.enter_context(Client(cfg.scheduler))
        else:
            cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = stack.enter_context(Client(stack.enter_context(cluster)))
        _partitions.append(cfg.partitions or 2 * max(1, len(client.scheduler_info()["workers"])))
        try:
            yield
        finally:
            _partitions.pop()


def partitions() -> int:
    """The open session's number of partitions of a frame; 0 in-process."""
    return _partitions[-1] if _partitions else 0


def frame(df: pd.DataFrame) -> Any:
    """`df` as the open session's cluster takes it: a Dask frame in `partitions()` parts (the libraries
    regroup them by series); `df` itself in-process."""
    if not _partitions:
        return df
    import dask.dataframe as dd

    return dd.from_pandas(df, npartitions=max(1, min(_partitions[-1], df["unique_id"].nunique())), sort=False)


def nixtla(call: Callable[..., Any], df: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """`call(df=df, **kwargs)`, a StatsForecast or (Distributed)MLForecast method, on the open session's
    cluster, else here."""
    if not _partitions:
        return call(df=df, **kwargs)
    # In-process order: series as they come in `df`, each window's days in turn.
    ids = df["unique_id"].unique()
    order = pd.Series(range(len(ids)), index=ids)
    out = call(df=frame(df), **kwargs).compute()
    keys = [c for c in ("cutoff", "ds") if c in out.columns]
    out = out.assign(_series=out["unique_id"].map(order).to_numpy()).sort_values(["_series", *keys], kind="stable")
    out = out.drop(columns="_series").reset_index(drop=True)
    # Fugue hands columns back in Arrow types: give them the in-process ones (ids, days, float forecasts).
    kinds = {"unique_id": df["unique_id"].dtype, "ds": df["ds"].dtype, "cutoff": df["ds"].dtype}
    return out.astype({c: kinds.get(c, "float64") for c in out.columns})


def map_shared(fn: Callable[..., Any], items: list, shared: Any) -> list:
    """`[fn(item, shared) for item in items]`, on the open session's cluster, else here. `shared` (a model)
    is sent to every worker once, not once per item."""
    if not _partitions:
        return [fn(item, shared) for item in items]
    from dask.distributed import default_client

    client = default_client()
    # hash=False: hashing a model pickles it again just to name it; pure=False: each call is its own work.
    held = client.scatter(shared, broadcast=True, hash=False)
    return client.gather(client.map(fn, items, [held] * len(items), pure=False))


def jobs(n_jobs: int) -> int:
    """`n_jobs` processes for a library's own pool, or 1 inside a task on a cluster worker: the worker is
    the unit of parallelism there, and Dask's worker processes are daemons, which cannot start a pool."""
    if "distributed" not in sys.modules:  # a worker has imported it; the in-process default never does
        return n_jobs
    from dask.distributed import get_worker

    try:
        get_worker()
    except ValueError:  # not in a worker
        return n_jobs
    return 1


def distributed(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step(cfg, ...)` inside a session of `cfg.compute`: the steps whose per-series work may go to a cluster."""

    @functools.wraps(step)
    def run(cfg, *args, **kwargs):
        with session(cfg.compute):
            return step(cfg, *args, **kwargs)

    return run
