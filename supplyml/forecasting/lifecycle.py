"""The model owner's lifecycle over the registry: judge a candidate against the champion, promote,
roll back, list, show and compare versions. The pipeline's evaluate/register steps and the
`supplyml model` commands call these same functions, so a promotion by hand passes the same gate.

Each version carries its evidence: the panel it was evaluated on (`evaluation/panel.parquet` in its
run), the first day of its held-out horizon (tag `holdout_start`), its selection evidence
(`selection.json`) and the verdict it got (tag `verdict`).
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from supplyml import compute, evidence, gate, registry
from supplyml.config import Config
from supplyml.features import history_days, plan
from supplyml.forecasting import Forecaster, backtest

log = logging.getLogger(__name__)
PANEL_ARTIFACT = "evaluation/panel.parquet"


def judge(
    cfg: Config,
    panel: pd.DataFrame,
    starts: list[pd.Timestamp],
    candidate: Forecaster,
    ours: backtest.Backtest | None = None,
    peers: list[evidence.Comparison] | None = None,
) -> gate.Verdict:
    """The gate's verdict on `candidate` against the current champion, both scored at the origins
    `starts` of `panel`. `ours`: the candidate's backtest there with its peers, when already scored on the
    whole panel; else `peers`, its recorded comparisons with the best peer."""
    name = cfg.registry.model_name
    current = registry.champion_version(name)
    if ours is not None:
        peers = gate.against_best_peer(ours, cfg)
    if current is None:
        return gate.decide(
            gate.figures(ours or gate.score(panel, starts, candidate, cfg), cfg), None, cfg.gate, peers=peers or ()
        )
    try:
        champion = registry.load_forecaster(name, current.version)
    except Exception as e:  # any failure to restore it means it cannot be judged against
        raise registry.RegistryError(
            f"the champion, {name} version {current.version}, cannot be loaded ({type(e).__name__}: {e}); "
            "nothing was promoted. Restore its artifacts, or `supplyml model rollback`"
        ) from e
    return _verdict(cfg, panel, starts, candidate, champion, current, ours, peers)


def _verdict(
    cfg: Config,
    panel: pd.DataFrame,
    starts: list[pd.Timestamp],
    candidate: Forecaster,
    champion: Forecaster,
    version,
    ours: backtest.Backtest | None = None,
    peers: list[evidence.Comparison] | None = None,
) -> gate.Verdict:
    if len(set(candidate.skus) & set(champion.skus)) < len(candidate.skus):
        ours = None  # scored on every series; the comparison is on the common ones
    mine, theirs, comparisons = gate.compare(panel, starts, candidate, champion, cfg, ours)
    return gate.decide(
        mine, theirs, cfg.gate, str(version.version), comparisons, note=_favours(version, starts[0]), peers=peers or ()
    )


def _favours(version, first: pd.Timestamp) -> str | None:
    """Whether the champion was fitted on days the evidence covers (its training cutoff is after `first`)."""
    cutoff = version.tags.get("holdout_start")
    if cutoff and pd.Timestamp(cutoff) > first:
        return (
            f"the champion was fitted on days up to {(pd.Timestamp(cutoff) - pd.Timedelta(days=1)).date()}, which "
            f"the evidence covers from {first.date()}: the comparison favours the champion"
        )
    return None


def log_evidence(panel: pd.DataFrame) -> None:
    """The panel a version is judged on, into the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(PANEL_ARTIFACT).name
        panel.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), Path(PANEL_ARTIFACT).parent.as_posix())


def held_out(cfg: Config, version: str) -> tuple[pd.DataFrame, list[pd.Timestamp], dict | None]:
    """The panel, held-out origins and selection evidence that `version` was judged on."""
    v = registry.get_version(cfg.registry.model_name, version)
    if "holdout_start" not in v.tags:
        raise registry.RegistryError(
            f"version {version} records no held-out horizon (tag holdout_start): it was not "
            "registered by the pipeline and cannot be judged"
        )
    with tempfile.TemporaryDirectory() as tmp:
        panel = pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{v.run_id}/{PANEL_ARTIFACT}", dst_path=tmp))
    try:
        selection = mlflow.artifacts.load_dict(f"runs:/{v.run_id}/selection.json")
    except Exception:  # versions registered without selection evidence
        selection = None
    origins = v.tags.get("holdout_origins", v.tags["holdout_start"]).split(",")
    return panel, [pd.Timestamp(o) for o in origins], selection


def promote(cfg: Config, version: str, *, by: str, force: bool = False, reason: str | None = None) -> dict:
    """Give `version` the champion alias if the gate passes it against the current champion on its own
    held-out origin; `force` (with a reason) overrides a failed gate, and the override is recorded."""
    name = cfg.registry.model_name
    if force and not reason:
        raise registry.RegistryError('--force needs --reason "...": an override is recorded with why')
    v = registry.get_version(name, version)
    current = registry.champion_version(name)
    if current is not None and str(current.version) == str(v.version):
        raise registry.RegistryError(f"version {version} is already the champion of {name}")
    panel, starts, _ = held_out(cfg, v.version)
    cfg = plan(cfg, history_days(panel["ds"]))  # the horizon and origins the pipeline used on this history
    candidate = registry.load_forecaster(name, v.version)
    verdict = judge(cfg, panel, starts, candidate, peers=gate.stored_peers(json.loads(v.tags.get("verdict", "null"))))
    if not verdict.promote and not force:
        return {"promoted": False, "version": v.version, "verdict": verdict}
    action = "promote" if verdict.promote else "force"
    why = reason or "passed the gate"
    record = registry.move_champion(
        name,
        v.version,
        expected=verdict.champion_version,
        action=action,
        by=by,
        why=why,
        figures=_figures(verdict),
        lock=registry.lock_path(cfg.workdir),
    )
    MlflowClient().set_model_version_tag(name, v.version, "verdict", json.dumps(verdict.to_dict(), default=float))
    return {"promoted": True, "version": v.version, "verdict": verdict, "record": record}


def compare(cfg: Config, old: str, new: str) -> gate.Verdict:
    """`new` against `old` as if `old` were the champion: both re-anchored on `new`'s evidence, by the same rule."""
    name = cfg.registry.model_name
    panel, starts, _ = held_out(cfg, new)
    cfg = plan(cfg, history_days(panel["ds"]))
    peers = gate.stored_peers(json.loads(registry.get_version(name, new).tags.get("verdict", "null")))
    return _verdict(
        cfg,
        panel,
        starts,
        registry.load_forecaster(name, new),
        registry.load_forecaster(name, old),
        registry.get_version(name, old),
        peers=peers,
    )


def _figures(verdict: gate.Verdict) -> dict:
    return {"challenger": verdict.challenger, "champion": verdict.champion}


def _forecast_chunk(skus: list[str], forecaster: Forecaster, horizon: int, quantiles: list[float]) -> pd.DataFrame:
    return forecaster.predict(skus, horizon, quantiles)


@compute.distributed
def export(
    cfg: Config,
    path: str | Path,
    version: str | None = None,
    horizon: int | None = None,
    quantiles: list[float] | None = None,
    chunk: int = 1000,
) -> dict:
    """Every SKU's forecast from a registered version (the champion by default) as one Parquet file:
    the batch path for what /forecast caps per request. Columns sku, date, mean, q<level>; the lineage
    the HTTP headers carry is in the file's metadata. With `compute.engine: dask` the chunks of `chunk`
    SKUs are forecast on the cluster's workers, each of which gets the model once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from supplyml import planning

    name = cfg.registry.model_name
    if version is None:
        champion = registry.champion_version(name)
        if champion is None:
            raise registry.RegistryError(
                f"{name} has no champion in {cfg.tracking_uri}: run `supplyml pipeline run` "
                "(or `make run`) first, or pass --version"
            )
        model_version = champion
    else:
        model_version = registry.get_version(name, version)
    horizon = horizon or cfg.features.horizon
    if not 1 <= horizon <= cfg.serving.max_horizon:
        raise ValueError(f"horizon must be 1 .. serving.max_horizon = {cfg.serving.max_horizon} days, got {horizon}")
    quantiles = sorted(set(quantiles or planning.QUANTILES))
    if not all(0 < q < 1 for q in quantiles):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {quantiles}")
    forecaster = registry.load_forecaster(name, str(model_version.version))
    skus = forecaster.skus
    chunks = [skus[i : i + chunk] for i in range(0, len(skus), chunk)]
    frames = compute.map_shared(functools.partial(_forecast_chunk, horizon=horizon, quantiles=quantiles), chunks, forecaster)
    frame = pd.concat(frames, ignore_index=True).rename(columns={"unique_id": "sku", "ds": "date"})
    lineage = {
        "model": name,
        "model_version": str(model_version.version),
        "data_md5": model_version.tags.get("dvc_md5", "unknown"),
    }
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**table.schema.metadata, **{f"supplyml.{k}".encode(): v.encode() for k, v in lineage.items()}}
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return {
        **lineage,
        "path": str(path),
        "skus": len(skus),
        "rows": len(frame),
        "horizon": horizon,
        "first_date": str(frame["date"].min().date()),
        "last_date": str(frame["date"].max().date()),
    }
