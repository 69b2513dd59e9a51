"""The one typed config: each default written once (in code), and every local store under `workdir`."""

import subprocess
import sys

import yaml
from conftest import REPO

from supplyml.config import DEFAULT_CONFIG, load_config


def test_workdir_moves_every_local_store():
    cfg = load_config(overrides=["workdir=/srv/shop2"])
    assert cfg.registry.tracking_uri == "sqlite:////srv/shop2/mlflow.db"
    assert cfg.registry.artifact_location == "/srv/shop2/mlartifacts"
    assert cfg.tune.storage == "sqlite:////srv/shop2/optuna.db"
    assert cfg.serving.bentoml_home == "/srv/shop2/bentoml"
    assert cfg.pipeline.root == "/srv/shop2/kfp"
    assert cfg.registry.server.backend_store_uri == "sqlite:////srv/shop2/mlflow-server/mlflow.db"
    assert cfg.registry.server.artifacts_destination == "/srv/shop2/mlflow-server/artifacts"
    # A store named outright stays where it was named; relative ones resolve against the project.
    named = load_config(overrides=["workdir=w", "tune.storage=postgresql+psycopg2://u@db/optuna"]).resolved("/repo")
    assert named.tune.storage == "postgresql+psycopg2://u@db/optuna"
    assert named.registry.tracking_uri == "sqlite:////repo/w/mlflow.db"


def test_the_shipped_yaml_repeats_no_default():
    # Defaults live in supplyml/config.py only; the YAML is for a user's overrides.
    assert not yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert load_config().data.non_product_codes[:2] == ["POST", "DOT"]  # Online Retail's postage: not demand


def test_config_command_prints_the_effective_configuration():
    out = subprocess.run(
        [sys.executable, "-m", "cli", "config", "--set", "workdir=/srv/shop2", "--set", "tune.n_trials=9"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    printed = yaml.safe_load(out)
    assert printed["tune"]["n_trials"] == 9 and printed["tune"]["storage"] == "sqlite:////srv/shop2/optuna.db"
    assert printed["policy"]["algorithm"] == load_config().policy.algorithm  # the policy's settings are config too


def test_an_override_changes_one_entry_of_a_default_mapping():
    # Replacing the whole mapping once gave the recommender {"epochs": 2} and the network's own architecture.
    params = load_config(overrides=["recommend.params.epochs=2"]).recommend.params
    assert params["epochs"] == 2 and params["architecture"] == "bpr" and params["dim"] == 64
    widths = load_config(overrides=["tune.search_space.hidden_size.mlp=[8, 16]"]).tune.search_space.hidden_size
    assert widths == {"deepar": (16, 64), "mlp": (8, 16), "transformer": (16, 64), "vae_lstm": (16, 64)}
