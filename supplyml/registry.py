"""MLflow model registry: versions with lineage, the `champion` alias, and the audit trail of its moves.

Every move of `champion` (a gate's promotion, an owner's forced promotion, a rollback) is recorded on
the registered model as a tag `audit.<n>` holding JSON (who, when, from which version to which, why,
the figures), and the champion it replaced keeps the `previous_champion` alias. `rollback` walks that
trail back, so it works repeatedly. A move is a compare-and-set: it happens only if the champion is
still the one the decision was made against, under a lock that serialises moves on one machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous_champion"
AUDIT = "audit."


class RegistryError(RuntimeError):
    """A registry operation that did not happen; the champion alias was left as it was."""


def champion_version(name: str, client: MlflowClient | None = None):
    return _alias(name, CHAMPION, client)


def _alias(name: str, alias: str, client: MlflowClient | None = None):
    client = client or MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:  # no such model or alias; anything else (MLflow down) propagates
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def load_forecaster(name: str, ref: str = CHAMPION):
    """The Forecaster inside a registered version: `ref` is an alias (`champion`) or a version number."""
    uri = f"models:/{name}/{ref}" if str(ref).isdigit() else f"models:/{name}@{ref}"
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().forecaster


def load_policy(name: str, ref: str = CHAMPION):
    """The learned policy inside a registered version (`tracking.PolicyModel`: `.policy`, `.setting`)."""
    uri = f"models:/{name}/{ref}" if str(ref).isdigit() else f"models:/{name}@{ref}"
    return mlflow.pyfunc.load_model(uri).unwrap_python_model()


def get_version(name: str, version: str, client: MlflowClient | None = None):
    """Version `version` of `name`, or a RegistryError that says which versions exist."""
    client = client or MlflowClient()
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        known = sorted((str(v.version) for v in client.search_model_versions(f"name='{name}'")), key=int)
        raise RegistryError(
            f"{name} has no version {version!r}; versions: {', '.join(known) or 'none'} (`supplyml model list` shows them)"
        ) from None


def register(model_uri: str, name: str, tags: dict[str, str]):
    """Create a model version carrying lineage tags."""
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    log.info("registered %s version %s", name, version.version)
    return version


def audit_trail(name: str, client: MlflowClient | None = None) -> list[dict]:
    """Every recorded move of `champion`, oldest first."""
    client = client or MlflowClient()
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(AUDIT))]


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def move_champion(
    name: str,
    version: str,
    *,
    expected: str | None,
    action: str,
    by: str,
    why: str,
    figures: dict | None,
    lock: Path,
    client: MlflowClient | None = None,
) -> dict:
    """Give `version` the champion alias if the champion is still `expected` (None: no champion yet);
    record the move; returns the audit record. Raises RegistryError and moves nothing otherwise."""
    client = client or MlflowClient()
    with _lock(lock):
        current = champion_version(name, client)
        current = str(current.version) if current else None
        if current != (None if expected is None else str(expected)):
            raise RegistryError(
                f"the champion of {name} moved to version {current} while version {version} was "
                f"judged against version {expected}; nothing changed: judge it again"
            )
        n = len(audit_trail(name, client))
        record = {
            "n": n + 1,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "by": by,
            "action": action,
            "from": current,
            "to": str(version),
            "why": why,
            "figures": figures or {},
        }
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current)
        client.set_registered_model_alias(name, CHAMPION, str(version))
        client.set_registered_model_tag(name, f"{AUDIT}{n + 1:06d}", json.dumps(record, default=float))
    log.info("%s version %s is now champion (was %s): %s by %s", name, version, current, action, by)
    return record


def retire_champion(
    name: str, version: str, *, by: str, why: str, lock: Path, figures: dict | None = None, client: MlflowClient | None = None
) -> dict:
    """Take the champion alias off `version` (it stays `previous_champion`, so a rollback restores it),
    if it still holds it; record the move. What was served by default falls back to the textbook."""
    client = client or MlflowClient()
    with _lock(lock):
        current = champion_version(name, client)
        if current is None or str(current.version) != str(version):
            raise RegistryError(f"version {version} of {name} is no longer the champion; nothing retired")
        n = len(audit_trail(name, client))
        record = {
            "n": n + 1,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "by": by,
            "action": "retire",
            "from": str(version),
            "to": None,
            "why": why,
            "figures": figures or {},
        }
        client.set_registered_model_alias(name, PREVIOUS, str(version))
        client.delete_registered_model_alias(name, CHAMPION)
        client.set_registered_model_tag(name, f"{AUDIT}{n + 1:06d}", json.dumps(record, default=float))
    log.info("%s version %s retired as champion: %s", name, version, why)
    return record


def rollback(name: str, *, by: str, why: str, lock: Path, client: MlflowClient | None = None) -> dict:
    """Restore the version the current champion replaced (its last promotion's `from`), or the champion
    the last move retired."""
    client = client or MlflowClient()
    current = champion_version(name, client)
    if current is None:
        trail = audit_trail(name, client)
        if trail and trail[-1]["action"] == "retire":  # restore the retired champion
            return move_champion(
                name, trail[-1]["from"], expected=None, action="rollback", by=by, why=why, figures=None, lock=lock, client=client
            )
        raise RegistryError(f"{name} has no champion: nothing to roll back")
    promotions = [r for r in audit_trail(name, client) if r["to"] == str(current.version) and r["action"] != "rollback"]
    if not promotions or promotions[-1]["from"] is None:
        raise RegistryError(f"version {current.version} of {name} was the first champion: there is nothing to roll back to")
    target = promotions[-1]["from"]
    record = move_champion(
        name, target, expected=str(current.version), action="rollback", by=by, why=why, figures=None, lock=lock, client=client
    )
    # What a further rollback would restore, so `previous_champion` always names it.
    earlier = [r for r in audit_trail(name, client) if r["to"] == target and r["action"] != "rollback"]
    if earlier and earlier[-1]["from"] is not None:
        client.set_registered_model_alias(name, PREVIOUS, earlier[-1]["from"])
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    return record


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return "unknown"


def lock_path(workdir: str) -> Path:
    """The file lock that serialises champion moves of every registered model under `workdir`."""
    return Path(workdir) / "registry.lock"


def versions(name: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per version of `name`, newest first: aliases, data version, the
    `metrics` of its held-out evaluation, gate verdict."""
    client = MlflowClient()
    rows = []
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)):
        full = client.get_model_version(name, v.version)  # search results may omit aliases
        figures = json.loads(full.tags.get("metrics", "{}"))
        verdict = json.loads(full.tags.get("verdict", "null") or "null")
        rows.append(
            {
                "version": int(v.version),
                "aliases": ",".join(full.aliases) or "-",
                "data": full.tags.get("dvc_md5", "-")[:10],
                "git": full.tags.get("git_commit", "-")[:8],
                "holdout_start": full.tags.get("holdout_start", full.tags.get("test_start", "-")),
                **{m: figures.get(m) for m in metrics},
                "verdict": "-" if verdict is None else "promote" if verdict["promote"] else "rejected",
            }
        )
    return pd.DataFrame(rows).set_index("version") if rows else pd.DataFrame()


def show(name: str, version: str) -> dict:
    """A version's aliases, run, tags and the champion moves that involve it."""
    v = get_version(name, version)
    moves = [r for r in audit_trail(name) if v.version in (r["to"], r["from"])]
    return {"version": v.version, "aliases": list(v.aliases), "run_id": v.run_id, "tags": dict(v.tags), "champion_moves": moves}
