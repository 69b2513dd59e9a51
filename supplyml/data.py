"""Ingest: read order lines or a daily panel as they are on disk, say which version they are, and
parse the user's columns (through the mapping in config) the same way for validation and features."""
from __future__ import annotations

import hashlib
import logging
import subprocess
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from supplyml.config import DataConfig, PanelColumns

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data that cannot be read at all (missing file, unknown format)."""


def read_table(path: str | Path, cfg: DataConfig) -> pd.DataFrame:
    """Read CSV (optionally gzipped) or Parquet without judging it: validation does that."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} not found; run `dvc pull` or pass --data PATH")
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
    return [c.invoice, c.sku] + ([c.location] if c.location else [])


# ---------------------------------------------------------------- daily panel input

PANEL_REQUIRED = ("unique_id", "ds", "y")


def explicit_panel_columns(pc: PanelColumns) -> set[str]:
    """Optional panel roles the user mapped to a name of their own: those must exist in the file."""
    return {role for role in pc.model_fields_set
            if role not in PANEL_REQUIRED and getattr(pc, role) != PanelColumns.model_fields[role].default}


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


def data_version(path: str | Path, root: str | Path = ".") -> dict[str, str]:
    """DVC md5 of data/ when the file lives there (from data.dvc), else the file's own md5."""
    path, root = Path(path).resolve(), Path(root).resolve()
    pointer = root / "data.dvc"
    version = {"data_path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
               "git_commit": _git_commit(root)}
    if pointer.exists() and path.is_relative_to(root / "data"):
        out = yaml.safe_load(pointer.read_text())["outs"][0]
        version["dvc_md5"] = out["md5"]
    else:
        version["dvc_md5"] = "untracked:" + _file_md5(path)
    return version
