"""Ingest: read order lines or a daily panel as they are on disk (pulled from DVC when absent), say which
version they are (checked against the DVC pointer), and parse the user's columns (through the mapping in
config) the same way for validation and features."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from supplyml.columns import PANEL_REQUIRED
from supplyml.config import DataConfig, PanelColumns

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data that cannot be read at all (missing file, unknown format)."""


def read_table(path: str | Path, cfg: DataConfig) -> pd.DataFrame:
    """Read CSV (optionally gzipped) or Parquet without judging it: validation does that."""
    path = _existing(path)
    # Codes such as 85123A, C536379 or 00042 must stay text, whatever pandas would guess.
    text_cols = {col: str for col in text_columns(cfg)}
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith(".parquet"):
        return pd.read_parquet(path)
    if ".csv" in suffixes:
        try:
            return pd.read_csv(path, dtype=text_cols, low_memory=False)
        except pd.errors.EmptyDataError:
            log.warning("%s is empty", path)
            return pd.DataFrame()
    raise DataError(f"{path}: unknown format {suffixes or '(none)'}; use .csv, .csv.gz or .parquet")


def text_columns(cfg: DataConfig) -> list[str]:
    """Identifier columns of the configured input, read as text from CSV."""
    if cfg.format == "panel":
        return [cfg.panel_columns.unique_id, cfg.panel_columns.location]
    c = cfg.columns
    return [col for col in (c.invoice, c.sku, c.location) if col]


# ---------------------------------------------------------------- daily panel input


def explicit_panel_columns(pc: PanelColumns) -> set[str]:
    """Optional panel roles the user mapped to a name of their own: those must exist in the file."""
    return {
        role
        for role in pc.model_fields_set
        if role not in PANEL_REQUIRED and getattr(pc, role) != PanelColumns.model_fields[role].default
    }


def panel_mapping(pc: PanelColumns, present: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(role -> file column, for every column used; file columns that must exist but do not).

    unique_id, ds and y must exist. price, promo, event and location are used when the file has
    them; one the user mapped explicitly (to a non-default name) must exist too."""
    present, explicit = set(present), explicit_panel_columns(pc)
    used, missing = {}, []
    for role in PanelColumns.model_fields:
        col = getattr(pc, role)
        if col in present:
            used[role] = col
        elif role in PANEL_REQUIRED or role in explicit:
            missing.append(col)
    return used, missing


def series_ids(raw: pd.DataFrame, used: dict[str, str]) -> pd.Series:
    """The series id of each row: the id as text, or `f"{id}@{location}"` when the panel has a
    location column. Missing where the id (or the location) is missing."""
    ids = _text(raw[used["unique_id"]])
    if "location" in used:
        ids = ids + "@" + _text(raw[used["location"]])  # missing on either side stays missing
    return ids


def parse_days(values: pd.Series) -> pd.Series:
    """Calendar day of each value; NaT where it does not parse. The time of day is dropped. Values
    with one UTC offset keep their local day; mixed offsets are put on UTC first. pandas infers the
    format from the first value; other ISO 8601 forms (2021-01-31 10:30) parse too, other formats not,
    so 01/02/2021 among 2021-01-31 is an error rather than a guess between January and February."""
    api = pd.api.types
    if api.is_datetime64_any_dtype(values):
        return _days(values)
    if not (api.is_object_dtype(values) or api.is_string_dtype(values)):
        values = values.astype("string")  # 20210131 is a day, not nanoseconds since 1970
    days = _days(values)
    retry = days.isna() & values.notna()
    if retry.any():
        days[retry] = _days(values[retry], format="ISO8601")
    return days


def _days(values: pd.Series, **kw) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(values):
        with warnings.catch_warnings():  # "could not infer format", mixed offsets: handled here
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(values, errors="coerce", **kw)
            if not pd.api.types.is_datetime64_any_dtype(parsed):  # mixed UTC offsets
                parsed = pd.to_datetime(values, errors="coerce", utc=True, **kw)
        values = parsed
    if values.dt.tz is not None:
        values = values.dt.tz_localize(None)
    return values.dt.normalize().astype("datetime64[ns]")


def parse_number(values: pd.Series) -> pd.Series:
    """Floats; NaN where a value is missing or not a number."""
    return pd.to_numeric(values, errors="coerce").astype(float)


def parse_flag(values: pd.Series) -> pd.Series:
    """1.0/0.0 from 0/1 or booleans; NaN where a value is missing or anything else."""
    num = parse_number(values)
    return num.where(num.isin([0.0, 1.0]))


def row_examples(raw: pd.DataFrame, mask: pd.Series, columns: list[str], n: int = 5) -> list[dict]:
    """Up to n offending rows as {row, column: value, ...}; `row` counts data rows from 0, so a CSV
    file's line number is row + 2."""
    cols = [c for c in dict.fromkeys(columns) if c in raw]
    positions = mask.to_numpy().nonzero()[0][:n]
    return [{"row": int(i), **{k: _scalar(v) for k, v in raw.iloc[i][cols].items()}} for i in positions]


def _scalar(value):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return str(value)
    return value.item() if hasattr(value, "item") else value


def _text(values: pd.Series) -> pd.Series:
    """Ids as stripped text, missing kept missing (never the string "nan")."""
    out = values.astype("string").str.strip().astype(object)
    return out.where(values.notna(), None)


# ---------------------------------------------------------------- which version: DVC


@dataclass(frozen=True)
class Tracked:
    """How DVC tracks a file: the .dvc file, the output holding it (a directory's md5 ends in .dir) and
    the md5 it records for the file itself (None: inside the output's directory but not in its manifest)."""

    dvcfile: str
    out: str
    out_md5: str
    md5: str | None
    commit: str | None = None  # the commit a revision named, when read at one


@contextmanager
def data_file(path: str | Path, root: str | Path = ".", rev: str | None = None) -> Iterator[Path]:
    """The file to read. On disk as it is; a DVC-tracked file that is absent (a fresh checkout, a
    pipeline pod) is pulled from the DVC remote first. At a git revision `rev`, a temporary copy of
    that revision's file, so that the workspace keeps the checkout's data."""
    path, root = Path(path).resolve(), Path(root).resolve()
    if rev is not None and not _in_dvc_repo(path, root):
        log.warning("data.rev=%s ignored: %s is not in the DVC repository %s", rev, path, root)
        rev = None
    if rev is None:
        if not path.exists() and _in_dvc_repo(path, root):
            pull(path, root)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="supplyml-data-") as tmp:
        local = Path(tmp) / path.name
        _get_at_rev(path, root, rev, local)
        yield local


def pull(path: Path, root: Path) -> None:
    """`dvc pull` of one file, when a DVC output holds it; else nothing (read_table says it is missing)."""
    from dvc.exceptions import CheckoutError, DvcException
    from dvc.repo import Repo

    rel = _rel(path, root)
    with Repo(str(root)) as repo:
        if not any(_contains(_repo_path(repo, out.fs_path), rel) for out in repo.index.outs):
            return
        where = _remote(repo)
        try:
            repo.pull(targets=[str(path)])  # DVC resolves targets against the cwd: pass it absolute
        except DvcException as e:  # CheckoutError: the objects were in neither the cache nor the remote
            reason = "the remote does not have it" if isinstance(e, CheckoutError) else _one_line(e)
            raise DataError(
                f"{rel} is not on disk and DVC could not pull it from {where} ({reason}); "
                f"make the remote reachable and run `dvc pull {rel}`"
            ) from None
    if not path.exists():
        raise DataError(f"{rel} is not among the files DVC tracks (pulled from {where}); check data.path")
    log.info("pulled %s from DVC %s", rel, where)


def _get_at_rev(path: Path, root: Path, rev: str, local: Path) -> None:
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from dvc_data.index.index import DataIndexError

    rel = _rel(path, root)
    fs = DVCFileSystem(str(root), rev=rev)
    try:
        where = _remote(fs.repo)  # opening the repository at `rev` fails here for an unknown revision
        fs.get_file(rel, str(local))
    except FileNotFoundError:
        raise DataError(f"{rel} does not exist at git revision {rev}; check data.path and data.rev") from None
    except (DvcException, DataIndexError) as e:
        raise DataError(
            f"DVC could not get {rel} at git revision {rev} ({_one_line(e)}); check data.rev, make "
            f"the remote reachable and run `dvc get . {rel} --rev {rev}`"
        ) from None
    finally:
        fs.close()
    log.info("pulled %s at git revision %s from DVC %s", rel, rev, where)


def tracked(path: str | Path, root: str | Path = ".", rev: str | None = None) -> Tracked | None:
    """How DVC tracks `path` at `rev` (None: the workspace's pointers); None when no DVC output holds it.
    A directory's manifest comes from the DVC cache, else from the remote."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from dvc_data.index.index import DataIndexError

    path, root = Path(path).resolve(), Path(root).resolve()
    rel = _rel(path, root)
    fs = DVCFileSystem(str(root), rev=rev)
    try:
        repo = fs.repo
        for out in repo.index.outs:
            out_rel = _repo_path(repo, out.fs_path)
            if _contains(out_rel, rel):
                try:
                    info = fs.info(rel).get("dvc_info") or {}
                except FileNotFoundError:
                    info = {}
                return Tracked(
                    _repo_path(repo, out.stage.path),
                    out_rel,
                    out.hash_info.value,
                    info.get("md5"),
                    repo.get_rev() if rev else None,
                )
        return None
    except (DvcException, DataIndexError) as e:
        raise DataError(
            f"cannot check {rel} against its DVC pointer ({_one_line(e)}): its manifest is in "
            f"neither the DVC cache nor the remote; make the remote reachable and run `dvc fetch`"
        ) from None
    finally:
        fs.close()


def data_version(
    path: str | Path, root: str | Path = ".", rev: str | None = None, local: str | Path | None = None
) -> dict[str, str]:
    """Which data this is: for a DVC-tracked file, the md5 of the DVC output holding it (data/ as a whole,
    the md5 lineage and the registry use) once the file's own md5 matches the one DVC records for it;
    else the file's own md5. `local` is where the bytes are when not at `path` (a copy at `rev`)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    md5 = _file_md5(_existing(local or path))
    version = {
        "data_path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
        "git_commit": _git_commit(root),
    }
    how = tracked(path, root, rev) if _in_dvc_repo(path, root) else None
    if how is None:
        version["dvc_md5"] = "untracked:" + md5
        return version
    # An edit without `dvc add` stops the run rather than being recorded as untracked: lineage would
    # name a DVC version the model never saw, or one nobody can pull again; either fix is one command.
    if how.md5 is None:
        raise DataError(
            f"{version['data_path']} is inside {how.out} but {how.dvcfile} does not track it: run `dvc add {how.out}`"
        )
    if md5 != how.md5:
        if rev:
            raise DataError(
                f"{version['data_path']} at git revision {rev} has md5 {md5}, not the {how.md5} that "
                f"{how.dvcfile} records: the copy in the DVC cache or remote is corrupt; `dvc push` "
                "a good one"
            )
        raise DataError(
            f"{version['data_path']} differs from its DVC pointer {how.dvcfile} (md5 {md5}, DVC "
            f"records {how.md5}): run `dvc add {how.out}` to record the edit, or `dvc checkout "
            f"{how.out}` to restore the tracked file"
        )
    version.update(dvc_md5=how.out_md5, file_md5=md5)
    if how.commit:
        version["data_rev"] = how.commit
    return version


def content_key(version: dict[str, str]) -> str:
    """What tuning studies are keyed on: the file's own md5. A tracked file's DVC md5 is that of all of
    data/, which every tracked file shares, so two panels in it would resume each other's study."""
    return version.get("file_md5") or version["dvc_md5"]


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} not found; run `dvc pull` or pass --data PATH")
    return path


def _in_dvc_repo(path: Path, root: Path) -> bool:
    return path.is_relative_to(root) and (root / ".dvc").is_dir()


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _repo_path(repo, fs_path: str) -> str:
    """A DVC path from the repository root (DVC's own relpaths are from the cwd; at a revision, its root
    is the git tree's `/`)."""
    return PurePosixPath(os.path.relpath(fs_path, repo.root_dir)).as_posix()


def _contains(out: str, rel: str) -> bool:
    return rel == out or rel.startswith(out.rstrip("/") + "/")


def _remote(repo) -> str:
    from dvc.exceptions import DvcException

    try:
        remote = repo.cloud.get_remote()
    except DvcException:
        return "no remote (none configured: `dvc remote add -d NAME URL`)"
    return f"remote '{remote.name}' ({remote.fs.unstrip_protocol(remote.path)})"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_product(skus: pd.Series, cfg: DataConfig) -> pd.Series:
    """True where an (upper-cased) SKU is a product, not postage, a fee or a voucher (`data.non_product_codes`,
    `data.non_product_prefixes`): the one rule demand and recommendations share."""
    not_product = skus.isin({code.upper() for code in cfg.non_product_codes})
    if prefixes := tuple(p.upper() for p in cfg.non_product_prefixes):
        not_product |= skus.str.startswith(prefixes)
    return ~not_product
