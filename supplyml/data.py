"""Ingest: read order data as it is on disk and say which version it is."""
from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from supplyml.config import DataConfig

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data that cannot be read at all (missing file, unknown format)."""


def read_table(path: str | Path, cfg: DataConfig) -> pd.DataFrame:
    """Read CSV (optionally gzipped) or Parquet without judging it: validation does that."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} not found; run `dvc pull` or pass --data PATH")
    # Codes such as 85123A and C536379 must stay text, whatever pandas would guess.
    text_cols = {cfg.columns.invoice: str, cfg.columns.sku: str}
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
