"""`supplyml` command line. The composition root: the library stays free of Kubeflow and BentoML, and
this module reaches `pipelines/` and `serving/` only inside the commands that need them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

from mlflow.exceptions import MlflowException

from cli import progress
from supplyml import families
from supplyml.config import ConfigError, load_config
from supplyml.registry import RegistryError
from supplyml.tracking_server import TrackingServerError

log = logging.getLogger("supplyml")


def _config(args, check_tracking: bool = True):
    # --data/--format win over --set; the path is JSON-quoted so YAML keeps it a string as given.
    data = [f"data.path={json.dumps(args.data)}"] if getattr(args, "data", None) else []
    data += [f"data.format={args.format}"] if getattr(args, "format", None) else []
    cfg = load_config(args.config, [*args.set, *data])
    cfg = cfg.resolved(Path.cwd())
    # Every process started from here (kfp.local tasks, bentoml) shares these stores.
    Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = cfg.serving.bentoml_home
    if check_tracking:  # a wrong password or a dead server says so now, not after a task started
        from supplyml.tracking_server import check

        check(cfg.tracking_uri)
    return cfg


def pipeline_run(args) -> int:
    from kfp import local

    from pipelines.training import build

    cfg = _config(args)
    if cfg.data.rev is None and (missing := _missing_data(cfg)):  # at a revision, ingest fetches it itself
        log.error("%s", missing)
        return 1
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=cfg.pipeline.root)
    # Our cluster image is built from this very environment, so running its tasks here is intended.
    warnings.filterwarnings("ignore", message=".*non-Python base image")
    log.warning("kfp.local ignores GPU requests, caching and retries; the compiled pipeline keeps them")
    log_path = Path(cfg.pipeline.root) / "logs" / f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.log"
    pipeline = build(cfg)  # before the step log takes the terminal: what it says (a branch left out) is shown
    try:
        with progress.steps(log_path):
            run = pipeline(config_json=cfg.to_json(), root=str(Path.cwd()))
    except RuntimeError as e:
        step = re.search(r"Inner task failed: \W*(\w+)", progress.ANSI.sub("", str(e)))
        if not step:  # not a task's failure: kfp.local itself, so say what it said
            log.error("pipeline stopped: %s (the whole log: %s)", e, log_path)
            return 1
        step = step.group(1)
        log.error("pipeline stopped at step %r; the end of its log is above, all of it in %s", step, log_path)
        if step == "ingest":  # it read nothing, so it wrote no Data Docs
            log.error("the data could not be read: no model was trained or registered; the ingest log above says why")
        elif step in ("validate", "featurize"):
            log.error(
                "the data was rejected before training: no model was trained or registered. GX Data Docs: %s/<run>/%s/",
                cfg.pipeline.root,
                step,
            )
        return 1
    _print_summary(cfg, run.outputs)
    return 0


def _missing_data(cfg) -> str | None:
    """Why ingest would find no data, said before kfp.local starts (inside, the reason sits in a task's
    log). A DVC-tracked file absent from the checkout is pulled now, as ingest would."""
    from supplyml.data import DataError, data_file

    try:
        with data_file(cfg.data.path, Path.cwd()) as path:
            if not path.exists():
                return f"data file {path} not found: run `make data` (or `dvc pull`), or pass --data PATH"
    except DataError as e:
        return str(e)
    return None


def _print_summary(cfg, outputs: dict) -> None:
    """Each family's figures and verdict (a family the run left out has no output), then the champions."""
    registered = {}
    for family in families.FAMILIES.values():
        if family.output in outputs:
            print(family.part("steps").summary(cfg, outputs))
            registered[family.name] = json.loads(outputs[family.output])
    champions = ", ".join(
        f"{r['name']} version {r['champion']}" if r["champion"] else f"no {r['name']}" for r in registered.values()
    )
    print(f"\nChampion: {champions}; its Bento: {_served_bento(cfg) or outputs['bento']}")
    if registered[families.FORECASTER]["champion"]:  # every Bento serves the forecaster's
        print("Serve it with:  supplyml serve   (or: make serve)")


def _served_bento(cfg) -> str | None:
    """The Bento of the current champions: the last package step to run built it."""
    from serving.package import NoChampionError, champion_bento

    try:
        return champion_bento(cfg, build=False)
    except NoChampionError:
        return None


def _print_verdict(verdict: dict) -> None:
    from supplyml.gate import describe

    print(describe(verdict))


def pipeline_compile(args) -> int:
    from kfp import compiler

    from pipelines.training import build

    cfg = load_config(args.config, args.set)
    compiler.Compiler().compile(build(cfg), args.out)
    print(f"wrote {args.out}")
    return 0


class KubeflowHostError(RuntimeError):
    """The Kubeflow Pipelines API could not be reached or refused us; nothing was submitted."""


def pipeline_submit(args) -> int:
    import kfp
    import kfp_server_api
    from urllib3.exceptions import HTTPError

    from pipelines.training import build

    cfg = load_config(args.config, args.set)
    host = args.host or cfg.pipeline.kfp_host
    if not host:
        raise ConfigError("no Kubeflow host: pass --host URL or set pipeline.kfp_host")
    try:
        result = kfp.Client(host=host).create_run_from_pipeline_func(
            build(cfg),
            arguments={"config_json": cfg.to_json()},
            experiment_name=cfg.registry.experiment,
            service_account=cfg.pipeline.service_account,
        )
    except HTTPError as e:  # urllib3 gave up: refused, no such host, timed out
        raise KubeflowHostError(
            f"Kubeflow Pipelines host {host} is unreachable ({getattr(e, 'reason', e)}); check "
            "--host / pipeline.kfp_host (e.g. `kubectl -n kubeflow port-forward svc/ml-pipeline-ui "
            "8080:80`)"
        ) from None
    except kfp_server_api.ApiException as e:
        if e.status in (401, 403):
            raise KubeflowHostError(
                f"Kubeflow Pipelines host {host} refused the credentials (HTTP {e.status}): "
                "log in again or set KF_PIPELINES_SA_TOKEN_PATH to a valid token"
            ) from None
        raise KubeflowHostError(f"Kubeflow Pipelines host {host} answered HTTP {e.status} {e.reason}") from None
    except TimeoutError as e:  # kfp.Client's own health-check retries, logged above
        raise KubeflowHostError(f"Kubeflow Pipelines host {host} failed its health check: {e}") from None
    print(f"submitted run {result.run_id} to {host}")
    return 0


def serve(args) -> int:
    from serving.package import NoChampionError, serve_command

    cfg = _config(args)
    try:
        cmd = serve_command(cfg)
    except NoChampionError as e:
        log.error("%s", e)
        return 1
    log.info("%s", " ".join(cmd))
    # The server reads serving.* (limits, batching) itself when it starts: hand it these --set overrides.
    served = shlex.join([s for s in args.set if s.startswith("serving.")])
    env = {
        **os.environ,
        "BENTOML_HOME": cfg.serving.bentoml_home,
        "SUPPLYML_SET": " ".join(filter(None, [os.environ.get("SUPPLYML_SET", ""), served])),
    }
    # The server replaces this process, so a process manager's SIGTERM (or Ctrl-C) reaches it, not an orphan.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


def predict_command(args) -> int:
    from supplyml import tracking
    from supplyml.forecasting import lifecycle

    cfg = _config(args)
    tracking.setup_tracking(cfg)
    try:
        quantiles = [float(q) for q in args.quantiles.split(",")] if args.quantiles else None
        out = lifecycle.export(cfg, args.out, args.version, args.horizon, quantiles)
    except ValueError as e:
        log.error("%s", e)
        return 2
    print(
        f"Wrote {out['path']}: {out['rows']} rows, {out['skus']} SKUs x {out['horizon']} days "
        f"({out['first_date']} .. {out['last_date']}) from {out['model']} version {out['model_version']}"
    )
    return 0


def model_command(args) -> int:
    """`supplyml model list | show V | compare V1 V2 | promote V | rollback [--family recommend]`: the model
    owner's commands."""
    import pandas as pd

    from supplyml import registry, tracking
    from supplyml.forecasting.backtest import format_table

    cfg = _config(args)
    tracking.setup_tracking(cfg)
    by = args.by or registry.user()
    family = families.get(args.family)
    name = family.model_name(cfg)
    if not family.judged_by_owner and args.action in ("compare", "promote"):
        log.error(
            "a %s version is judged by the pipeline's gate on its held-out windows; `supplyml model rollback "
            "--family %s` restores the previous champion",
            name,
            family.name,
        )
        return 2
    if args.action == "list":
        table = registry.versions(name, family.listed)
        print(format_table(table) if len(table) else f"{name} has no versions yet")
        trail = registry.audit_trail(name) if len(table) else []
        if trail:
            print("\nChampion moves (oldest first):")
            print(pd.DataFrame(trail)[["n", "at", "by", "action", "from", "to", "why"]].to_string(index=False))
    elif args.action == "show":
        print(json.dumps(registry.show(name, args.version), indent=2, default=str))
    elif args.action == "compare":
        _print_verdict(family.part("lifecycle").compare(cfg, args.old, args.new).to_dict())
    elif args.action == "promote":
        result = family.part("lifecycle").promote(cfg, args.version, by=by, force=args.force, reason=args.reason)
        _print_verdict(result["verdict"].to_dict())
        if not result["promoted"]:
            log.error(
                'version %s was not promoted: the gate failed (see above); override with --force --reason "..."', args.version
            )
            return 1
        print(
            f"version {args.version} is now champion ({result['record']['action']} by {by}); "
            f"its Bento: {_bento_of_champions(cfg)}"
        )
    elif args.action == "rollback":
        why = args.reason or "rollback"
        record = registry.rollback(name, by=by, why=why, lock=registry.lock_path(cfg.workdir))
        print(
            f"rolled back: version {record['to']} of {name} is champion again (was {record['from']}); "
            f"its Bento: {_bento_of_champions(cfg)}"
        )
    return 0


def _bento_of_champions(cfg) -> str:
    """The champions' Bento, built now if a move left them without one."""
    from serving.package import NoChampionError, champion_bento

    try:
        return champion_bento(cfg)
    except NoChampionError as e:  # a recommender moved while no forecaster is champion
        return f"none ({e})"


def bench_command(args) -> int:
    from supplyml.data import DataError
    from supplyml.validation import DataValidationError

    cfg = _config(args)
    family = families.get(args.family)
    out = args.out or f"{cfg.workdir}/bench/{family.name}"
    bench = family.part("bench")
    try:
        result = bench.run(cfg, out, root=Path.cwd())
    except (DataError, DataValidationError) as e:
        log.error("%s", e)
        log.error("the data was rejected before anything trained")
        return 1
    print(bench.render(cfg, result, out))
    return 0


def monitor_command(args) -> int:
    import pandas as pd

    from supplyml.data import DataError
    from supplyml.forecasting import monitor
    from supplyml.forecasting.backtest import format_table
    from supplyml.validation import DataValidationError

    cfg = _config(args)
    args.out = args.out or f"{cfg.workdir}/monitor"
    try:
        result = monitor.run(cfg, args.out, root=Path.cwd())
    except monitor.NoChampionError as e:
        log.error("%s", e)
        return 2
    except (DataError, DataValidationError) as e:
        log.error("%s", e)
        log.error("the new data was rejected; nothing was scored")
        return 1
    w, drift = result["window"], result["drift"]
    print(
        f"\nMonitor of {result['model']} version {result['champion_version']} (history end {result['history_end']}) "
        f"on {w['start']} .. {w['end']}: {w['days']} days, {result['series']} of {result['champion_series']} series"
    )
    table = pd.DataFrame({"realised": result["realised"], "backtest": result["backtest"]}).reindex(monitor.HEADLINE)
    print(format_table(table))
    features, series = drift["features"], drift["series"]
    print(
        f"Drifted covariates ({drift['features_test']}): "
        f"{', '.join(m['name'] for m in features['moved']) or 'none'} of {features['tested']} tested"
    )
    names = [m["name"] for m in series["moved"]]
    print(
        f"Drifted series ({drift['series_test']}): {len(names)} of {series['tested']} ({series['share']:.0%})"
        + (f": {', '.join(names[: monitor.SHOWN])}{' ...' if len(names) > monitor.SHOWN else ''}" if names else "")
    )
    print(f"RETRAIN: {'; '.join(result['reasons'])}" if result["retrain"] else f"OK: {monitor.healthy_line(result)}")
    print(f"Wrote {args.out}/report.html, monitor.json; MLflow run {result['mlflow_run_id']}")
    return 3 if result["retrain"] else 0


def tracking_server_command(args) -> int:
    """Become `mlflow server` (exec: a signal to this process reaches the server itself)."""
    from supplyml import tracking_server

    flags = {
        "host": args.host,
        "port": args.port,
        "backend_store_uri": args.backend_store_uri,
        "artifacts_destination": args.artifacts_destination,
    }
    args.set = [*args.set, *(f"registry.server.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None)]
    cfg = _config(args, check_tracking=False)
    cmd, env = tracking_server.command(cfg)
    s = cfg.registry.server
    log.info(
        "MLflow tracking server on http://%s:%s: backend %s, artifacts %s, users %s",
        s.host,
        s.port,
        tracking_server.redacted(s.backend_store_uri),
        tracking_server.redacted(s.artifacts_destination),
        tracking_server.redacted(s.auth_database_uri),
    )
    log.info(
        "clients: --set registry.tracking_uri=http://%s:%s with MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD", s.host, s.port
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


def config_command(args) -> int:
    import yaml

    print(yaml.safe_dump(load_config(args.config, args.set).model_dump(mode="json"), sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML overrides of the defaults (default: configs/default.yaml)")
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set tune.n_trials=8 (repeatable)",
    )
    data_args = argparse.ArgumentParser(add_help=False)
    data_args.add_argument(
        "--data",
        metavar="PATH",
        help="CSV (.csv, .csv.gz) or Parquet file to use instead of data.path: order lines, or "
        "a daily panel with --format panel (one row per series and day; map its columns "
        "with --set data.panel_columns.ds=date etc., or name them unique_id, ds, y)",
    )
    data_args.add_argument(
        "--format",
        choices=["transactions", "panel"],
        help="what --data holds (default: data.format): order-line transactions, or a daily "
        "demand panel with optional price, promo, event and location columns (with a location, each "
        "(id, location) is its own series, unique_id = id@location)",
    )
    parser = argparse.ArgumentParser(prog="supplyml", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pipe = sub.add_parser("pipeline", help="run, compile or submit the training pipeline").add_subparsers(
        dest="action", required=True
    )
    run = pipe.add_parser("run", parents=[common, data_args], help="run the whole pipeline locally on kfp.local")
    run.set_defaults(func=pipeline_run)
    comp = pipe.add_parser("compile", parents=[common], help="write the pipeline's IR YAML")
    comp.add_argument("--out", default="pipelines/training.yaml")
    comp.set_defaults(func=pipeline_compile)
    subm = pipe.add_parser("submit", parents=[common], help="submit the pipeline to a Kubeflow Pipelines host")
    subm.add_argument("--host", help="KFP API endpoint (default: pipeline.kfp_host)")
    subm.set_defaults(func=pipeline_submit)
    sub.add_parser("serve", parents=[common], help="serve the champion's Bento over HTTP").set_defaults(func=serve)
    pred = sub.add_parser(
        "predict", parents=[common], help="every SKU's forecast from the champion (or --version) to one Parquet file"
    )
    pred.add_argument("--out", required=True, metavar="FILE.parquet")
    pred.add_argument("--version", help="a registered version (default: the champion)")
    pred.add_argument("--horizon", type=int, help="days (default: features.horizon)")
    pred.add_argument("--quantiles", metavar="Q,Q,...", help="levels, e.g. 0.1,0.5,0.9 (default: 0.05,0.5,0.95)")
    pred.set_defaults(func=predict_command)
    owner_cmd = sub.add_parser("model", help="list, show, compare, promote or roll back registered versions")
    owner_cmd.set_defaults(func=model_command)
    model = owner_cmd.add_subparsers(dest="action", required=True)
    owner = argparse.ArgumentParser(add_help=False, parents=[common])
    owner.add_argument("--by", help="who acts, for the audit trail (default: the OS user)")
    owner.add_argument(
        "--family",
        choices=list(families.FAMILIES),
        default=families.FORECASTER,
        help="whose registered model (default: the forecaster); compare and promote: "
        + ", ".join(f.name for f in families.FAMILIES.values() if f.judged_by_owner),
    )
    model.add_parser("list", parents=[owner], help="versions with aliases, data version, metrics, verdict; champion moves")
    model.add_parser("show", parents=[owner], help="one version's tags and champion moves").add_argument("version")
    cmp_ = model.add_parser("compare", parents=[owner], help="score NEW against OLD on NEW's held-out days")
    cmp_.add_argument("old")
    cmp_.add_argument("new")
    prom = model.add_parser("promote", parents=[owner], help="make VERSION champion if it passes the gate")
    prom.add_argument("version")
    prom.add_argument("--force", action="store_true", help="override a failed gate (needs --reason; recorded)")
    prom.add_argument("--reason", help="why, for the audit trail")
    back = model.add_parser("rollback", parents=[owner], help="restore the previous champion")
    back.add_argument("--reason", help="why, for the audit trail")
    bench = sub.add_parser(
        "bench",
        parents=[common, data_args],
        help="rolling-origin benchmark of the model recipe vs peers and replenishment policies",
    )
    bench.add_argument(
        "--out",
        metavar="DIR",
        help="where results.json, forecasts.parquet and report.html go (default: WORKDIR/bench/FAMILY)",
    )
    bench.add_argument(
        "--family",
        choices=list(families.FAMILIES),
        default=families.FORECASTER,
        help="; ".join(f"{f.name}: {f.about}" for f in families.FAMILIES.values()),
    )
    bench.set_defaults(func=bench_command)
    mon = sub.add_parser(
        "monitor",
        parents=[common, data_args],
        help="score the champion on new actuals and check drift; exit status 3 says retrain",
    )
    mon.add_argument("--out", metavar="DIR", help="where report.html and monitor.json go (default: WORKDIR/monitor)")
    mon.set_defaults(func=monitor_command)
    sub.add_parser(
        "config", parents=[common], help="print the effective configuration: defaults, the YAML and --set"
    ).set_defaults(func=config_command)
    srv = sub.add_parser(
        "tracking-server",
        parents=[common],
        help="MLflow server with basic auth and proxied artifacts (registry.server); needs "
        "MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY in the environment",
    )
    srv.add_argument("--host", help="interface to bind (default: registry.server.host)")
    srv.add_argument("--port", type=int, help="default: registry.server.port")
    srv.add_argument(
        "--backend-store-uri",
        metavar="URL",
        help="runs and registry, e.g. postgresql+psycopg2://USER@HOST/mlflow (default: sqlite under WORKDIR/)",
    )
    srv.add_argument(
        "--artifacts-destination",
        metavar="DIR_OR_URI",
        help="where the server keeps artifacts, e.g. s3://bucket/mlflow (default: under WORKDIR/)",
    )
    srv.set_defaults(func=tracking_server_command)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    except (RegistryError, TrackingServerError, KubeflowHostError) as e:
        log.error("%s", e)
        return 1
    except MlflowException as e:  # MLflow unreachable or refusing: nothing was moved
        import mlflow

        log.error("MLflow at %s failed: %s; the champion alias was not moved", mlflow.get_tracking_uri(), str(e).splitlines()[0])
        return 1


if __name__ == "__main__":
    sys.exit(main())
