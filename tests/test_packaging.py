"""What ships to a cluster: the compiled pipeline and the Bento's requirements."""

import json
import subprocess
import sys
import tomllib

import yaml
from conftest import REPO, supplyml


def compile_to(path, *overrides):
    compiled = supplyml("pipeline", "compile", "--out", str(path), *(a for o in overrides for a in ("--set", o)))
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    return load_ir(path)


def load_ir(path) -> dict:
    """The pipeline spec, with the platform spec (Secrets, tolerations) that follows it as a second document."""
    spec, platform = yaml.safe_load_all(path.read_text())
    return {**spec, **platform}


def test_compiled_pipeline_takes_its_image_from_config_and_asks_gpus_for_tune_and_train(tmp_path):
    ir = compile_to(tmp_path / "p.yaml", "pipeline.image=registry.example/supplyml:test")
    executors = ir["deploymentSpec"]["executors"]
    # Shared: ingest, validate. Forecasting: featurize, tuning (three), train, evaluate, register, package or
    # keep. Recommendations (-2: the second use of a component): interactions, tuning, train, evaluate,
    # register, package. The learned policy: train, evaluate, register, package (-3).
    assert len(executors) == 23
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/supplyml:test"}
    gpu = {name for name, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert gpu == {"exec-tune-worker", "exec-train", "exec-tune-worker-2", "exec-recommend-train", "exec-policy-train"}
    assert len(compile_to(tmp_path / "f.yaml", "pipeline.recommend=false")["deploymentSpec"]["executors"]) == 15
    assert (
        len(compile_to(tmp_path / "f.yaml", "pipeline.recommend=false", "pipeline.policy=false")["deploymentSpec"]["executors"])
        == 11
    )
    # Data without customers has no recommender branch, whatever pipeline.recommend says.
    assert len(compile_to(tmp_path / "c.yaml", "data.columns.customer=null")["deploymentSpec"]["executors"]) == 15
    assert len(compile_to(tmp_path / "c.yaml", "data.format=panel")["deploymentSpec"]["executors"]) == 15
    assert executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"


def test_the_learned_policy_is_tuned_before_it_trains_only_when_asked(tmp_path):
    tasks = compile_to(tmp_path / "p.yaml", "pipeline.tune_policy=true")["root"]["dag"]["tasks"]
    best = tasks["policy-train"]["inputs"]["parameters"]["best"]["taskOutputParameter"]
    assert best["producerTask"] == "tune-best-3" and tasks["tune-study-3"]["inputs"]["parameters"]["family"] == {
        "runtimeValue": {"constant": "policy"}
    }
    untuned = load_ir(REPO / "pipelines" / "training.yaml")["root"]["dag"]["tasks"]  # the default, kept current below
    assert "tune-best-3" not in untuned
    assert untuned["policy-train"]["inputs"]["parameters"]["best"] == {"runtimeValue": {"constant": "{}"}}


def test_tune_workers_are_parallel_tasks_that_read_the_study_and_mlflow_login_from_secrets(tmp_path):
    ir = compile_to(tmp_path / "p.yaml", "tune.workers=3")
    loop = ir["root"]["dag"]["tasks"]["for-loop-2"]
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]" and loop["iteratorPolicy"]["parallelismLimit"] == 3
    assert list(ir["components"]["comp-for-loop-2"]["dag"]["tasks"]) == ["tune-worker"]
    assert ir["root"]["dag"]["tasks"]["tune-best"]["dependentTasks"] == ["featurize", "for-loop-2", "tune-study"]
    cluster = ir["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secrets = {
        name: {(s["secretName"], k["secretKey"], k["envVar"]) for s in e.get("secretAsEnv", []) for k in s["keyToEnv"]}
        for name, e in cluster.items()
    }
    optuna = ("supplyml-optuna-storage", "url", "SUPPLYML_OPTUNA_STORAGE")
    tuning = {"exec-tune-study", "exec-tune-worker", "exec-tune-best"}
    assert {name for name, s in secrets.items() if optuna in s} == tuning | {f"{n}-2" for n in tuning}
    login = {
        ("supplyml-mlflow-client", "username", "MLFLOW_TRACKING_USERNAME"),
        ("supplyml-mlflow-client", "password", "MLFLOW_TRACKING_PASSWORD"),
    }
    assert {name for name, s in secrets.items() if login <= s} == tuning | {f"{n}-2" for n in tuning} | {
        "exec-train",
        "exec-evaluate",
        "exec-register",
        "exec-package",
        "exec-keep",
        "exec-recommend-train",
        "exec-recommend-evaluate",
        "exec-recommend-register",
        "exec-package-2",
        "exec-policy-train",
        "exec-policy-evaluate",
        "exec-policy-register",
        "exec-package-3",
    }
    tolerations = {name: e["tolerations"] for name, e in cluster.items() if "tolerations" in e}
    assert tolerations == {
        n: [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
        for n in ("exec-tune-worker", "exec-train", "exec-tune-worker-2", "exec-recommend-train", "exec-policy-train")
    }


def test_committed_pipeline_yaml_is_current(tmp_path):
    assert compile_to(tmp_path / "p.yaml") == load_ir(REPO / "pipelines/training.yaml"), (
        "pipelines/training.yaml is stale: run `supplyml pipeline compile`"
    )


def test_bento_requirements_match_the_project_pins():
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line for line in (REPO / "serving/requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == pins
    assert "torch==2.13.0" in pins


def test_package_runs_only_when_the_gate_promoted(tmp_path):
    components = compile_to(tmp_path / "p.yaml")["components"]
    policy = {
        name: task["triggerPolicy"]["condition"]
        for c, tasks in components.items()
        if c.startswith("comp-condition-branches-")
        for name, task in c and tasks["dag"]["tasks"].items()
    }
    branch_of = {
        task: name.removeprefix("comp-")
        for name, c in components.items()
        if name.startswith("comp-condition-") and "dag" in c
        for task in c["dag"]["tasks"]
    }
    assert policy[branch_of["package"]] == "inputs.parameter_values['pipelinechannel--register-promoted'] == 'true'"
    assert policy[branch_of["keep"]] == "!(inputs.parameter_values['pipelinechannel--register-promoted'] == 'true')"
    # One Bento holds every champion: the forecaster's promotion builds it (after the other families have
    # registered); without one, the recommender's promotion builds it in the same Else, after `keep`, or
    # else the learned policy's. So at most one package task runs.
    tasks = {task: (name, t) for name, c in components.items() if "dag" in c for task, t in c["dag"]["tasks"].items()}
    group, nested = tasks[branch_of["package-2"]]
    outer, branches = tasks[group.removeprefix("comp-")]  # the If/Elif pair, inside keep's Else, after keep
    assert outer == f"comp-{branch_of['keep']}" and branches["dependentTasks"] == ["keep"]
    assert (
        nested["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--recommend-register-promoted'] == 'true'"
    )
    assert tasks[branch_of["package-3"]][1]["triggerPolicy"]["condition"] == (
        "!(inputs.parameter_values['pipelinechannel--recommend-register-promoted'] == 'true') && "
        "inputs.parameter_values['pipelinechannel--policy-register-promoted'] == 'true'"
    )
    root = compile_to(tmp_path / "p.yaml")["root"]["dag"]["tasks"]
    assert sorted(root[next(iter(branches_of(root)))]["dependentTasks"]) == ["policy-register", "recommend-register", "register"]


def branches_of(tasks: dict) -> list[str]:
    return [name for name in tasks if name.startswith("condition-branches-")]


def test_the_core_library_imports_neither_kubeflow_nor_bentoml():
    # Every module of supplyml/, imported in a fresh interpreter: the CLI (cli/) is the composition root.
    code = (
        "import importlib, pkgutil, sys, supplyml\n"
        "for m in pkgutil.walk_packages(supplyml.__path__, 'supplyml.'): importlib.import_module(m.name)\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'kfp', 'bentoml', 'pipelines', 'serving', 'components'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_private_bentoml_pieces_are_where_the_service_expects_them():
    """serving/adapters.py and serving/middleware.py lean on two BentoML internals that have no public
    equivalent: an upgrade that moves either must fail here, loudly, not in a server."""
    import inspect

    from _bentoml_sdk.io_models import IORootModel
    from bentoml._internal.server import base_app
    from bentoml._internal.server.http import traffic

    assert "from .http.traffic import TimeoutMiddleware" in inspect.getsource(base_app)  # read when the app is built
    assert {"app", "timeout"} <= set(inspect.signature(traffic.TimeoutMiddleware.__init__).parameters)
    assert "root" in IORootModel.model_fields


def test_with_compute_engine_dask_every_task_reads_the_scheduler_from_its_config(tmp_path):
    scheduler = "tcp://supplyml-dask-scheduler.supplyml:8786"
    ir = compile_to(tmp_path / "p.yaml", "compute.engine=dask", f"compute.scheduler={scheduler}")
    config = json.loads(ir["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"])
    assert config["compute"] == {"engine": "dask", "scheduler": scheduler, "workers": 2, "partitions": None}
    # train and evaluate (the steps whose statistical work goes to the cluster) take that config.
    tasks = ir["root"]["dag"]["tasks"]
    for step in ("train", "evaluate"):
        assert tasks[step]["inputs"]["parameters"]["config_json"] == {"componentInputParameter": "config_json"}
