"""The training pipeline: wiring only. Every step is a component from `components.steps`."""

import json
import logging
from typing import NamedTuple

from kfp import dsl, kubernetes

from components import steps
from supplyml.config import OPTUNA_STORAGE_ENV, Config
from supplyml.forecasting.search import tunes

log = logging.getLogger(__name__)
# The train step's `best` when the recipe has no tuned candidate (statistical models, LightGBM): no study ran.
UNTUNED = {"params": {}, "study": "none", "trial": "none", "value": None}


def build(cfg: Config):
    """The pipeline for this config. Components take their image from config, so the same code runs
    locally on `kfp.local` and on a cluster. Only ops that `kfp.local` also runs are used here."""
    if cfg.pipeline.recommend and (why := cfg.no_customers()):
        log.warning("no recommender branch: %s", why)
        cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"recommend": False})})

    def component(func):
        return dsl.component(func, base_image=cfg.pipeline.image, install_kfp_package=False)

    ingest, validate, featurize, tune_study, tune_worker, tune_best, train, evaluate, register, package, keep = map(
        component,
        [
            steps.ingest,
            steps.validate,
            steps.featurize,
            steps.tune_study,
            steps.tune_worker,
            steps.tune_best,
            steps.train,
            steps.evaluate,
            steps.register,
            steps.package,
            steps.keep,
        ],
    )
    interactions, recommend_train, recommend_evaluate, recommend_register = map(
        component, [steps.interactions, steps.recommend_train, steps.recommend_evaluate, steps.recommend_register]
    )
    policy_train, policy_evaluate, policy_register = map(
        component, [steps.policy_train, steps.policy_evaluate, steps.policy_register]
    )

    def gpu(task):
        # Honoured by Kubeflow; kfp.local ignores resource requests and Lightning falls back to CPU. GPU
        # node pools are usually tainted for the accelerator: tolerate that taint.
        if cfg.pipeline.accelerator_limit:
            task.set_accelerator_type(cfg.pipeline.accelerator_type).set_accelerator_limit(cfg.pipeline.accelerator_limit)
            kubernetes.add_toleration(task, key=cfg.pipeline.accelerator_type, operator="Exists", effect="NoSchedule")
        return task

    def mlflow_login(*tasks):
        # On Kubeflow the tasks that talk to the tracking server log in with a Secret's credentials.
        for task in tasks:
            if cfg.pipeline.mlflow_secret:
                kubernetes.use_secret_as_env(
                    task,
                    cfg.pipeline.mlflow_secret,
                    {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"},
                )

    def optuna_storage(task):
        # On Kubeflow every tuning task reads the shared study's URL from a Secret (credentials stay out
        # of the config); kfp.local ignores it and uses tune.storage.
        if cfg.pipeline.optuna_secret:
            kubernetes.use_secret_as_env(task, cfg.pipeline.optuna_secret, {"url": OPTUNA_STORAGE_ENV})
        return task

    def tuned(config_json, lineage, family: str, data):
        """The family's study, tune.workers Optuna workers sharing it as parallel tasks, then the best trial."""
        study = optuna_storage(tune_study(config_json=config_json, lineage=lineage, family=family))
        with dsl.ParallelFor(list(range(cfg.tune.workers)), parallelism=cfg.tune.workers) as worker:
            workers = optuna_storage(
                gpu(tune_worker(config_json=config_json, family=family, worker=worker, study=study.outputs["study"], data=data))
            )
        best = optuna_storage(
            tune_best(config_json=config_json, lineage=lineage, family=family, run_id=study.outputs["Output"]).after(workers)
        )
        return [study, workers, best]

    def recommendations(config_json, checked, raw, panel):
        """The same gated order lines as purchases, tuned, judged on the test window, registered."""
        bought = interactions(config_json=config_json, lineage=checked.outputs["Output"], raw=raw.outputs["raw"])
        lineage, purchases, items = bought.outputs["Output"], bought.outputs["purchases"], bought.outputs["items"]
        tuning = tuned(config_json, lineage, "recommend", purchases)
        fitted = gpu(
            recommend_train(config_json=config_json, lineage=lineage, best=tuning[-1].output, purchases=purchases, items=items)
        )
        scored = recommend_evaluate(
            config_json=config_json,
            run_id=fitted.outputs["Output"],
            purchases=purchases,
            items=items,
            raw=raw.outputs["raw"],
            panel=panel.outputs["panel"],
            model=fitted.outputs["model"],
        )
        registered = recommend_register(
            config_json=config_json,
            run_id=fitted.outputs["Output"],
            evaluation=scored.outputs["Output"],
            purchases=purchases,
            items=items,
        )
        mlflow_login(*tuning, fitted, scored, registered)
        return registered

    def policies(config_json, lineage, panel, forecaster):
        """The learned policy, trained on this forecaster's paths over the test window (the evaluation's
        evidence), judged there on actual demand, registered."""
        trained = gpu(
            policy_train(
                config_json=config_json, lineage=lineage, panel=panel.outputs["panel"], model=forecaster.outputs["model"]
            )
        )
        scored = policy_evaluate(
            config_json=config_json,
            trained=trained.outputs["Output"],
            panel=panel.outputs["panel"],
            reviews=trained.outputs["reviews"],
        )
        registered = policy_register(
            config_json=config_json, lineage=lineage, trained=trained.outputs["Output"], evaluation=scored.output
        )
        mlflow_login(trained, scored, registered)
        return registered

    fields = {
        "evaluation": str,
        "registration": str,
        "bento": str,
        **({"recommendation": str} if cfg.pipeline.recommend else {}),
        **({"policy": str} if cfg.pipeline.policy else {}),
    }
    Outputs = NamedTuple("Outputs", **fields)

    @dsl.pipeline(
        name=cfg.pipeline.name, description="Order lines to champions (forecaster, recommender, learned policy) in a Bento"
    )
    def training(config_json: str = cfg.to_json(), root: str = "/app") -> Outputs:
        raw = ingest(config_json=config_json, root=root, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        checked = validate(config_json=config_json, lineage=raw.outputs["Output"], raw=raw.outputs["raw"])
        panel = featurize(config_json=config_json, lineage=checked.outputs["Output"], raw=raw.outputs["raw"])
        lineage = panel.outputs["Output"]
        tuning = tuned(config_json, lineage, "forecast", panel.outputs["panel"]) if tunes(cfg) else []
        best = tuning[-1].output if tuning else json.dumps(UNTUNED)
        fitted = gpu(train(config_json=config_json, lineage=lineage, best=best, panel=panel.outputs["panel"]))
        scored = evaluate(
            config_json=config_json, run_id=fitted.outputs["Output"], panel=panel.outputs["panel"], model=fitted.outputs["model"]
        )
        registered = register(
            config_json=config_json,
            lineage=lineage,
            run_id=fitted.outputs["Output"],
            evaluation=scored.outputs["Output"],
            panel=panel.outputs["panel"],
            model=fitted.outputs["model"],
        )
        recommended = recommendations(config_json, checked, raw, panel) if cfg.pipeline.recommend else None
        learned = policies(config_json, lineage, panel, fitted) if cfg.pipeline.policy else None
        later = [t for t in (recommended, learned) if t is not None]
        # A new Bento only when a gate promoted; otherwise the champions' stays the one served. One Bento
        # holds every champion, so at most one package task runs, once every family has registered.
        with dsl.If(registered.outputs["promoted"] == "true"):
            built = package(config_json=config_json)
        with dsl.Else():
            kept = keep(config_json=config_json, registration=registered.outputs["registration"])
            for i, task in enumerate(later):
                with dsl.If(task.outputs["promoted"] == "true") if i == 0 else dsl.Elif(task.outputs["promoted"] == "true"):
                    mlflow_login(package(config_json=config_json).after(kept))
        for task in later:
            built.after(task)
            kept.after(task)
        mlflow_login(*tuning, fitted, scored, registered, built, kept)
        outputs = [scored.outputs["Output"], registered.outputs["registration"], dsl.OneOf(built.output, kept.output)]
        return Outputs(*outputs, *(t.outputs["registration"] for t in later))

    return training
