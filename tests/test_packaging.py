"""What ships to a cluster: the compiled pipeline and the Bento's requirements."""
import subprocess
import sys
import tomllib

import yaml
from conftest import REPO


def compile_to(path, *overrides):
    args = [a for o in overrides for a in ("--set", o)]
    subprocess.run([sys.executable, "-m", "supplyml.cli", "pipeline", "compile", "--out", str(path), *args],
                   cwd=REPO, check=True, capture_output=True)
    return yaml.safe_load(path.read_text())


def test_compiled_pipeline_takes_its_image_from_config_and_asks_gpus_for_tune_and_train(tmp_path):
    ir = compile_to(tmp_path / "p.yaml", "pipeline.image=registry.example/supplyml:test")
    executors = ir["deploymentSpec"]["executors"]
    assert len(executors) == 9  # the eight steps, and `keep` on the gate's no-branch
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/supplyml:test"}
    gpu = {name for name, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert gpu == {"exec-tune", "exec-train"}
    assert executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"


def test_committed_pipeline_yaml_is_current(tmp_path):
    assert compile_to(tmp_path / "p.yaml") == yaml.safe_load((REPO / "pipelines/training.yaml").read_text()), \
        "pipelines/training.yaml is stale: run `supplyml pipeline compile`"


def test_bento_requirements_match_the_project_pins():
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line for line in (REPO / "serving/requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == pins
    assert "torch==2.13.0" in pins


def test_package_runs_only_when_the_gate_promoted(tmp_path):
    components = compile_to(tmp_path / "p.yaml")["components"]
    branches = components["comp-condition-branches-1"]["dag"]["tasks"]
    policy = {name: task["triggerPolicy"]["condition"] for name, task in branches.items()}
    branch_of = {task: name.removeprefix("comp-") for name, c in components.items() if name.startswith("comp-condition-")
                 and "dag" in c for task in c["dag"]["tasks"]}
    assert policy[branch_of["package"]] == "inputs.parameter_values['pipelinechannel--register-promoted'] == 'true'"
    assert policy[branch_of["keep"]] == "!(inputs.parameter_values['pipelinechannel--register-promoted'] == 'true')"
