"""Data inside a pod: a fresh git checkout has data.dvc but no data/; ingest pulls the file it needs
from the DVC remote (a second local directory here), and the recorded version is checked, not trusted."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from supplyml import steps
from supplyml.config import load_config
from supplyml.data import DataError, content_key, data_version

SHORT = "data/short/short.parquet"
MULTISTORE = "data/multistore/multistore.parquet"
DVC = str(Path(sys.executable).with_name("dvc"))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def pointer(clone: Path, rev: str = "HEAD") -> str:
    return yaml.safe_load(git(clone, "show", f"{rev}:data.dvc"))["outs"][0]["md5"]


def previous_data_rev(clone: Path) -> str:
    """The newest commit whose data.dvc names other data than HEAD's."""
    return next(c for c in git(clone, "log", "--format=%H", "--", "data.dvc").split() if pointer(clone, c) != pointer(clone))


def object_path(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def manifest(store: Path, dir_md5: str) -> dict[str, str]:
    """relpath -> md5 from a directory's .dir manifest, as DVC recorded it."""
    return {e["relpath"]: e["md5"] for e in json.loads(object_path(store, dir_md5).read_text())}


def copy_objects(source: Path, remote: Path, dir_md5: str, relpaths: list[str]) -> None:
    """Only the manifest and the objects of `relpaths` (repo paths under data/): not all of data/."""
    files = manifest(source, dir_md5)
    for md5 in [dir_md5, *(files[p.removeprefix("data/")] for p in relpaths)]:
        object_path(remote, md5).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(object_path(source, md5), object_path(remote, md5))


def use_remote(clone: Path, url: Path) -> None:
    subprocess.run([DVC, "remote", "add", "--local", "-d", "test", str(url)], cwd=clone, check=True, capture_output=True)


@pytest.fixture
def clone(tmp_path):
    """A git checkout of HEAD without data/, its DVC default remote a second directory holding only
    short's and (at the previous data version) multistore's objects; the committed repo-local remote
    is removed so that nothing else can answer."""
    clone = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(REPO), str(clone))
    source, remote = clone / "dvc-remote", tmp_path / "remote"
    copy_objects(source, remote, pointer(clone), [SHORT])
    copy_objects(source, remote, pointer(clone, previous_data_rev(clone)), [MULTISTORE])
    shutil.rmtree(source)
    use_remote(clone, remote)
    assert not (clone / "data").exists() and not (clone / ".dvc" / "cache").exists()
    return clone


def panel_config(*overrides: str):
    return load_config(overrides=["data.format=panel", f"data.path={SHORT}", *overrides])


def test_two_tracked_panels_share_a_dvc_md5_but_not_a_tuning_study():
    # DVC tracks data/ as one output, so its md5 names every file in it; a study keyed on it would be
    # resumed by another panel's bench or pipeline. The key is each file's own md5, recomputed here.
    short, multistore = data_version(SHORT, REPO), data_version(MULTISTORE, REPO)
    assert short["dvc_md5"] == multistore["dvc_md5"]
    assert content_key(short) == hashlib.md5((REPO / SHORT).read_bytes()).hexdigest()
    assert content_key(multistore) == hashlib.md5((REPO / MULTISTORE).read_bytes()).hexdigest() != content_key(short)


def test_ingest_pulls_the_missing_file_from_the_remote(clone, tmp_path, caplog):
    raw_out = tmp_path / "raw.parquet"
    with caplog.at_level(logging.INFO, logger="supplyml.data"):
        version = steps.ingest(panel_config(), str(clone), str(raw_out))

    assert f"pulled {SHORT} from DVC remote 'test' ({tmp_path / 'remote'})" in caplog.messages
    # Only the target came down, not the other datasets under data/.
    assert sorted(p.relative_to(clone / "data").as_posix() for p in (clone / "data").rglob("*") if p.is_file()) == [
        "short/short.parquet"
    ]
    raw = pd.read_parquet(raw_out)
    assert raw.shape == (7900, 7) and sorted(raw["store"].unique()) == [f"S{i:02d}" for i in range(1, 11)]
    assert str(raw["date"].min().date()) == "2022-01-01"
    pd.testing.assert_frame_equal(raw, pd.read_parquet(REPO / SHORT))
    recorded = manifest(tmp_path / "remote", pointer(clone))["short/short.parquet"]
    assert version == {
        "data_path": SHORT,
        "git_commit": git(clone, "rev-parse", "HEAD"),
        "dvc_md5": pointer(clone),
        "file_md5": recorded,
    }
    assert version["dvc_md5"].endswith(".dir")


def test_ingest_at_a_revision_reads_that_revisions_data_and_leaves_the_workspace(clone, tmp_path, caplog):
    rev = previous_data_rev(clone)
    cfg = load_config(overrides=["data.format=panel", f"data.path={MULTISTORE}", f"data.rev={rev}"])
    with caplog.at_level(logging.INFO, logger="supplyml.data"):
        version = steps.ingest(cfg, str(clone), str(tmp_path / "raw.parquet"))

    assert f"pulled {MULTISTORE} at git revision {rev} from DVC remote 'test' ({tmp_path / 'remote'})" in caplog.messages
    assert version["dvc_md5"] == pointer(clone, rev) != pointer(clone)
    assert version["data_rev"] == rev and version["git_commit"] == git(clone, "rev-parse", "HEAD")
    assert len(pd.read_parquet(tmp_path / "raw.parquet")) == 211040
    assert not (clone / "data").exists()  # the checkout's data stays the checkout's


def test_unknown_revision_is_one_line(clone, tmp_path):
    with pytest.raises(DataError) as info:
        steps.ingest(panel_config("data.rev=no-such-rev"), str(clone), str(tmp_path / "raw.parquet"))
    assert str(info.value) == (
        f"DVC could not get {SHORT} at git revision no-such-rev (unknown Git revision "
        f"'no-such-rev'); check data.rev, make the remote reachable and run "
        f"`dvc get . {SHORT} --rev no-such-rev`"
    )


def test_a_file_edited_without_dvc_add_stops_ingest(clone, tmp_path):
    steps.ingest(panel_config(), str(clone), str(tmp_path / "first.parquet"))
    shutil.rmtree(clone / ".dvc" / "cache")  # the manifest then comes from the remote again
    with (clone / SHORT).open("ab") as f:
        f.write(b"\0")
    edited = subprocess.run(["md5sum", str(clone / SHORT)], capture_output=True, text=True, check=True).stdout.split()[0]
    recorded = manifest(tmp_path / "remote", pointer(clone))["short/short.parquet"]

    message = (
        f"{SHORT} differs from its DVC pointer data.dvc (md5 {edited}, DVC records {recorded}): "
        "run `dvc add data` to record the edit, or `dvc checkout data` to restore the tracked file"
    )
    with pytest.raises(DataError) as info:
        data_version(clone / SHORT, clone)
    assert str(info.value) == message
    with pytest.raises(DataError) as info:
        steps.ingest(panel_config(), str(clone), str(tmp_path / "raw.parquet"))
    assert str(info.value) == message and not (tmp_path / "raw.parquet").exists()


def test_a_file_dvc_does_not_track_inside_data_is_an_error(clone):
    (clone / "data" / "short").mkdir(parents=True)
    (clone / "data" / "short" / "extra.csv").write_text("unique_id,ds,y\n")
    with pytest.raises(DataError) as info:
        data_version(clone / "data" / "short" / "extra.csv", clone)
    assert str(info.value) == "data/short/extra.csv is inside data but data.dvc does not track it: run `dvc add data`"


def test_missing_file_and_unreachable_remote_is_one_line(clone, tmp_path):
    nowhere = tmp_path / "nowhere"
    subprocess.run([DVC, "remote", "modify", "--local", "test", "url", str(nowhere)], cwd=clone, check=True, capture_output=True)
    with pytest.raises(DataError) as info:
        steps.ingest(panel_config(), str(clone), str(tmp_path / "raw.parquet"))
    assert str(info.value) == (
        f"{SHORT} is not on disk and DVC could not pull it from remote 'test' ({nowhere}) "
        f"(the remote does not have it); make the remote reachable and run `dvc pull {SHORT}`"
    )
    assert not (clone / SHORT).exists()
