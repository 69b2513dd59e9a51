"""The MLflow tracking server a team shares: `command` starts it with basic auth and proxied artifacts;
`check` asks a server one cheap authenticated question before a command relies on it."""

from __future__ import annotations

import configparser
import os
import re
import sys
from pathlib import Path

from supplyml.config import Config

# MLflow's own names: the server and its clients read them themselves, so no secret goes into a file,
# the repo or a command line.
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
CREDENTIALS = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to an account on it"


class TrackingServerError(RuntimeError):
    """The tracking server cannot be started, reached, or used with these credentials."""


def auth_ini(cfg: Config) -> Path:
    """The basic-auth config MLflow reads from MLFLOW_AUTH_CONFIG_PATH, written under workdir (never the
    repo) from registry.server. It holds no password: MLflow takes the admin's from ADMIN_PASSWORD_ENV."""
    s = cfg.registry.server
    ini = configparser.ConfigParser()  # MLflow reads it with interpolation: a literal % is %%
    ini["mlflow"] = {
        k: v.replace("%", "%%")
        for k, v in {
            "default_permission": s.default_permission,
            "database_uri": s.auth_database_uri,
            "admin_username": s.admin_username,
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
            "auth_cache_ttl_seconds": str(s.auth_cache_ttl_seconds),
        }.items()
    }
    path = Path(cfg.workdir) / "mlflow-server" / "basic_auth.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # a DB URI may hold one
        ini.write(f)
    return path


def command(cfg: Config) -> tuple[list[str], dict[str, str]]:
    """`mlflow server` (the one beside this interpreter) and its environment, for a resolved config."""
    missing = [v for v in (ADMIN_PASSWORD_ENV, SECRET_KEY_ENV) if not os.environ.get(v)]
    if missing:
        raise TrackingServerError(
            f"set {' and '.join(missing)} in the environment first (the admin's password, used "
            "when the admin is first created, and the key that signs sessions); "
            "they are never read from the repo"
        )
    s = cfg.registry.server
    for uri in (s.backend_store_uri, s.auth_database_uri):
        if uri.startswith("sqlite:///"):  # sqlite creates the file, not its folder
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in s.artifacts_destination:
        Path(s.artifacts_destination).mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        s.backend_store_uri,
        # Clients upload and download through the server: they need no access to the store itself.
        "--serve-artifacts",
        "--artifacts-destination",
        s.artifacts_destination,
        "--host",
        s.host,
        "--port",
        str(s.port),
        "--workers",
        str(s.workers),
    ]
    # MLflow's GenAI job runners (seven huey processes) serve nothing here; MLflow's own variable re-enables them.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini(cfg))}
    return cmd, env


def redacted(uri: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", uri)


def check(uri: str, timeout: float = 10) -> None:
    """One authenticated call to an HTTP tracking server with the client's own credentials, and without
    MLflow's retries, so a wrong password or a dead server is one clear line in seconds. Stores that are
    not HTTP pass."""
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    try:
        r = http_request(
            creds,
            "/api/2.0/mlflow/experiments/search",
            "GET",
            max_retries=0,
            timeout=timeout,
            raise_on_status=False,
            params={"max_results": 1},
        )
    except MlflowException as e:
        raise TrackingServerError(
            f"MLflow tracking server {uri} is unreachable ({_root(e)}): start it "
            "(`supplyml tracking-server`) or point registry.tracking_uri / "
            "MLFLOW_TRACKING_URI at a running one"
        ) from None
    if r.status_code == 401:
        who = (
            f"the password of user {creds.username!r}"
            if creds.username
            else "the token in MLFLOW_TRACKING_TOKEN"
            if creds.token
            else "a request without credentials"
        )
        raise TrackingServerError(f"MLflow tracking server {uri} rejected {who} (HTTP 401): {CREDENTIALS}")
    if r.status_code == 403:
        raise TrackingServerError(
            f"MLflow tracking server {uri} denied user {creds.username!r} access (HTTP 403): "
            f"ask its admin for permission, or {CREDENTIALS}"
        )
    if r.status_code != 200:
        raise TrackingServerError(
            f"MLflow tracking server {uri} answered HTTP {r.status_code} to a search of experiments: {r.text.strip()[:200]}"
        )


def _root(e: BaseException) -> str:
    while (parent := e.__cause__ or e.__context__) is not None:
        e = parent
    return str(e)
