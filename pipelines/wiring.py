"""What a family's branch of the training pipeline is wired with (`components.<family>.branch`): the
config, the shared tasks before it, the branches wired so far, and the helpers every branch uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfp import dsl, kubernetes

from components import steps
from supplyml.config import OPTUNA_STORAGE_ENV, Config


def component(cfg: Config, func):
    """A KFP component of `func` in the configured image (the same code runs locally and on a cluster)."""
    return dsl.component(func, base_image=cfg.pipeline.image, install_kfp_package=False)


@dataclass
class Branch:
    registered: Any  # its register task: outputs "registration" and "promoted"
    outputs: dict[str, Any]  # the pipeline outputs it adds, by name (its Family.output among them)
    tasks: dict[str, Any] = field(default_factory=dict)  # tasks a later family's branch reads, by step


@dataclass
class Wiring:
    cfg: Config
    config_json: Any  # the pipeline's parameter
    raw: Any  # the shared tasks: ingest, validate, featurize
    checked: Any
    panel: Any
    branches: dict[str, Branch] = field(default_factory=dict)  # by family name, in FAMILIES order

    def component(self, func):
        return component(self.cfg, func)

    def gpu(self, task):
        # Honoured by Kubeflow; kfp.local ignores resource requests and Lightning falls back to CPU. GPU
        # node pools are usually tainted for the accelerator: tolerate that taint.
        p = self.cfg.pipeline
        if p.accelerator_limit:
            task.set_accelerator_type(p.accelerator_type).set_accelerator_limit(p.accelerator_limit)
            kubernetes.add_toleration(task, key=p.accelerator_type, operator="Exists", effect="NoSchedule")
        return task

    def mlflow_login(self, *tasks) -> None:
        # On Kubeflow the tasks that talk to the tracking server log in with a Secret's credentials.
        for task in tasks:
            if self.cfg.pipeline.mlflow_secret:
                kubernetes.use_secret_as_env(
                    task,
                    self.cfg.pipeline.mlflow_secret,
                    {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"},
                )

    def optuna_storage(self, task):
        # On Kubeflow every tuning task reads the shared study's URL from a Secret (credentials stay out
        # of the config); kfp.local ignores it and uses tune.storage.
        if self.cfg.pipeline.optuna_secret:
            kubernetes.use_secret_as_env(task, self.cfg.pipeline.optuna_secret, {"url": OPTUNA_STORAGE_ENV})
        return task

    def tuned(self, lineage, family: str, data) -> list:
        """The family's study, tune.workers Optuna workers sharing it as parallel tasks, then the best trial."""
        study_op, worker_op, best_op = map(self.component, [steps.tune_study, steps.tune_worker, steps.tune_best])
        workers_n, config_json = self.cfg.tune.workers, self.config_json
        study = self.optuna_storage(study_op(config_json=config_json, lineage=lineage, family=family))
        with dsl.ParallelFor(list(range(workers_n)), parallelism=workers_n) as worker:
            workers = self.optuna_storage(
                self.gpu(
                    worker_op(config_json=config_json, family=family, worker=worker, study=study.outputs["study"], data=data)
                )
            )
        best = self.optuna_storage(
            best_op(config_json=config_json, lineage=lineage, family=family, run_id=study.outputs["Output"]).after(workers)
        )
        return [study, workers, best]
