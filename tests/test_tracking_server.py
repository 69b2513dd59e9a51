"""`supplyml tracking-server`'s settings and the client commands' check of their server before anything
starts. The pipeline, the gate and the owner's commands against a running server are test_lifecycle's."""

import os
import subprocess
import sys

from conftest import REPO, stores


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_the_server_refuses_to_start_without_its_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")}
    proc = cli("tracking-server", "--set", f"workdir={tmp_path}", env=env)
    assert proc.returncode == 1
    line = last_line(proc.stderr)
    assert "MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow-server").exists()  # nothing written: it stopped before the auth config


def test_mlflow_reads_the_auth_settings_written_from_the_config(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    from supplyml import tracking_server
    from supplyml.config import load_config

    cfg = load_config(overrides=[f"workdir={tmp_path}", "registry.server.auth_cache_ttl_seconds=5"]).resolved(REPO)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tracking_server.auth_ini(cfg)))
    auth = read_auth_config()
    assert (auth.auth_cache_ttl_seconds, auth.default_permission, auth.admin_username) == (5, "READ", "admin")
    assert auth.database_uri == f"sqlite:///{tmp_path.resolve()}/mlflow-server/auth.db"


def test_a_client_command_names_an_unreachable_server(tmp_path):
    proc = cli(
        "model", "list", *(a for o in stores(tmp_path) for a in ("--set", o)), "--set", "registry.tracking_uri=http://127.0.0.1:9"
    )
    assert proc.returncode == 1
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
