"""The champion gate, and alias moves in a real MLflow sqlite registry."""
import mlflow
import pytest
from mlflow import MlflowClient

from supplyml.config import GateConfig
from supplyml.registry import (
    CHALLENGER,
    CHAMPION,
    apply_decision,
    champion_version,
    gate,
    register,
)

PEERS = {"seasonal_naive": {"wrmsse": 1.2}, "croston": {"wrmsse": 0.95}}
# Validation evidence as forecasting.selection records it.
SELECTION = {"peers": ["lightgbm", "croston"], "chosen": "network + lightgbm",
             "validation": {"network": {"wrmsse": 0.93}, "lightgbm": {"wrmsse": 0.90}, "croston": {"wrmsse": 0.97},
                            "network + lightgbm": {"wrmsse": 0.88}}}


def test_first_passing_candidate_is_promoted():
    d = gate({"wrmsse": 0.97}, PEERS, None, GateConfig(max_wrmsse=1.0))
    assert d.passed and d.promote and d.reasons == ["passed the gate"]


@pytest.mark.parametrize("wrmsse, reason", [(1.1, "gate.max_wrmsse"), (float("nan"), "gate.max_wrmsse")])
def test_failing_candidate_is_not_promoted_and_says_why(wrmsse, reason):
    d = gate({"wrmsse": wrmsse}, PEERS, None, GateConfig(max_wrmsse=1.05))
    assert not d.passed and not d.promote and any(reason in r for r in d.reasons)


def test_the_chosen_model_must_match_the_best_peer_on_validation_origins():
    assert gate({"wrmsse": 0.97}, PEERS, None, GateConfig(), SELECTION).promote
    worse = {**SELECTION, "chosen": "network"}  # 0.93 on validation, LightGBM 0.90
    d = gate({"wrmsse": 0.97}, PEERS, None, GateConfig(), worse)
    assert not d.passed and d.reasons == ["validation WRMSSE 0.930 is worse than the best peer's, lightgbm 0.900"]
    assert gate({"wrmsse": 0.97}, PEERS, None, GateConfig(must_match_best_peer=False), worse).promote


def test_existing_champion_stays_and_passing_candidate_becomes_challenger():
    d = gate({"wrmsse": 0.5}, PEERS, {"wrmsse": 0.9}, GateConfig())
    assert d.passed and not d.promote


@pytest.fixture
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    # Artifacts too go under tmp_path, not the default ./mlruns of the working directory.
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", artifact_location=(tmp_path / "a").as_uri()))
    yield MlflowClient()


def _version(tmp_path):
    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run():
        uri = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"]).model_uri
    return register(uri, "m", {"git_commit": "abc", "dvc_md5": "123.dir"})


def test_aliases_move_only_as_the_gate_decides(store, tmp_path):
    v1 = _version(tmp_path)
    assert champion_version("m", store) is None
    assert apply_decision("m", v1.version, gate({"wrmsse": 0.9}, PEERS, None, GateConfig())) == CHAMPION
    v2 = _version(tmp_path)
    assert apply_decision("m", v2.version, gate({"wrmsse": 0.8}, PEERS, {"wrmsse": 0.9}, GateConfig())) == CHALLENGER
    v3 = _version(tmp_path)
    assert apply_decision("m", v3.version, gate({"wrmsse": 2.0}, PEERS, None, GateConfig())) is None
    assert str(champion_version("m", store).version) == "1"
    assert str(store.get_model_version_by_alias("m", CHALLENGER).version) == "2"
    assert store.get_model_version("m", "3").tags["gate"].startswith("WRMSSE 2.000")
    assert store.get_model_version("m", "1").tags["dvc_md5"] == "123.dir"
