"""The training pipeline: wiring only. Every step is a component from `components.steps`."""

from typing import NamedTuple

from kfp import dsl, kubernetes

from components import steps
from supplyml.config import OPTUNA_STORAGE_ENV, Config


def build(cfg: Config):
    """The pipeline for this config. Components take their image from config, so the same code runs
    locally on `kfp.local` and on a cluster. Only ops that `kfp.local` also runs are used here."""

    def component(func):
        return dsl.component(func, base_image=cfg.pipeline.image, install_kfp_package=False)

    ingest, validate, featurize, tune_study, tune_worker, tune_best, train, evaluate, register, package, keep = map(
        component, [steps.ingest, steps.validate, steps.featurize, steps.tune_study, steps.tune_worker, steps.tune_best,
                    steps.train, steps.evaluate, steps.register, steps.package, steps.keep])

    def gpu(task):
        # Honoured by Kubeflow; kfp.local ignores resource requests and Lightning falls back to CPU. GPU
        # node pools are usually tainted for the accelerator: tolerate that taint.
        if cfg.pipeline.accelerator_limit:
            task.set_accelerator_type(cfg.pipeline.accelerator_type).set_accelerator_limit(
                cfg.pipeline.accelerator_limit)
            kubernetes.add_toleration(task, key=cfg.pipeline.accelerator_type, operator="Exists", effect="NoSchedule")
        return task

    def mlflow_login(*tasks):
        # On Kubeflow the tasks that talk to the tracking server log in with a Secret's credentials.
        for task in tasks:
            if cfg.pipeline.mlflow_secret:
                kubernetes.use_secret_as_env(task, cfg.pipeline.mlflow_secret, {
                    "username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"})

    def optuna_storage(task):
        # On Kubeflow every tuning task reads the shared study's URL from a Secret (credentials stay out
        # of the config); kfp.local ignores it and uses tune.storage.
        if cfg.pipeline.optuna_secret:
            kubernetes.use_secret_as_env(task, cfg.pipeline.optuna_secret, {"url": OPTUNA_STORAGE_ENV})
        return task

    @dsl.pipeline(name=cfg.pipeline.name, description="Order lines to a champion forecaster and a Bento")
    def training(config_json: str = cfg.to_json(), root: str = "/app") -> NamedTuple(
            "Outputs", evaluation=str, registration=str, bento=str):
        raw = ingest(config_json=config_json, root=root, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        checked = validate(config_json=config_json, lineage=raw.outputs["Output"], raw=raw.outputs["raw"])
        panel = featurize(config_json=config_json, lineage=checked.outputs["Output"], raw=raw.outputs["raw"])
        # The study is created once, then tune.workers Optuna workers share it as parallel tasks.
        study = optuna_storage(tune_study(config_json=config_json, lineage=panel.outputs["Output"]))
        with dsl.ParallelFor(list(range(cfg.tune.workers)), parallelism=cfg.tune.workers) as worker:
            workers = optuna_storage(gpu(tune_worker(config_json=config_json, worker=worker, study=study.outputs["study"],
                                                     panel=panel.outputs["panel"])))
        best = optuna_storage(tune_best(config_json=config_json, lineage=panel.outputs["Output"],
                                        run_id=study.outputs["Output"]).after(workers))
        fitted = gpu(train(config_json=config_json, lineage=panel.outputs["Output"], best=best.output,
                           panel=panel.outputs["panel"]))
        scored = evaluate(config_json=config_json, run_id=fitted.outputs["Output"], panel=panel.outputs["panel"],
                          model=fitted.outputs["model"])
        registered = register(config_json=config_json, lineage=panel.outputs["Output"], run_id=fitted.outputs["Output"],
                              evaluation=scored.outputs["Output"], panel=panel.outputs["panel"],
                              model=fitted.outputs["model"])
        # A new Bento only for a promoted version; otherwise the champion's stays the one served.
        with dsl.If(registered.outputs["promoted"] == "true"):
            built = package(config_json=config_json)
        with dsl.Else():
            kept = keep(config_json=config_json, registration=registered.outputs["registration"])
        mlflow_login(study, workers, best, fitted, scored, registered, built, kept)
        return NamedTuple("Outputs", evaluation=str, registration=str, bento=str)(
            scored.outputs["Output"], registered.outputs["registration"], dsl.OneOf(built.output, kept.output))

    return training
