"""The training pipeline: the shared steps, one branch per model family, then one Bento of the
champions. Wiring only: a family's steps and its branch are in `components.<its package's name>`."""

import functools
import importlib
import logging
from types import ModuleType
from typing import NamedTuple

from kfp import dsl

from components import steps
from pipelines.wiring import Wiring, component
from supplyml.config import Config
from supplyml.families import FAMILIES

log = logging.getLogger(__name__)


def wired(cfg: Config) -> tuple[Config, dict[str, ModuleType]]:
    """The components module of each family this config has a branch for, in FAMILIES order (the
    forecaster first: every Bento serves it, and later branches may read its tasks); and the config,
    with the flag of a branch the data cannot have turned off."""
    modules = {}
    for family in FAMILIES.values():
        module = importlib.import_module(f"components.{family.package.rsplit('.', 1)[-1]}")
        if module.SWITCH and not getattr(cfg.pipeline, module.SWITCH):
            continue  # the user turned it off
        if why := module.unavailable(cfg):
            log.warning("no %s branch: %s", family.served_as, why)
            if module.SWITCH:
                cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={module.SWITCH: False})})
            continue
        modules[family.name] = module
    return cfg, modules


def build(cfg: Config):
    """The pipeline for this config. Components take their image from config, so the same code runs
    locally on `kfp.local` and on a cluster. Only ops that `kfp.local` also runs are used here."""
    cfg, modules = wired(cfg)
    names = [name for module in modules.values() for name in module.OUTPUTS]
    Outputs = NamedTuple("Outputs", [(name, str) for name in [*names, "bento"]])

    op = functools.partial(component, cfg)

    @dsl.pipeline(name=cfg.pipeline.name, description="Order lines to each model family's champion, served in one Bento")
    def training(config_json: str = cfg.to_json(), root: str = "/app") -> Outputs:
        raw = op(steps.ingest)(config_json=config_json, root=root, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        checked = op(steps.validate)(config_json=config_json, lineage=raw.outputs["Output"], raw=raw.outputs["raw"])
        panel = op(steps.featurize)(config_json=config_json, lineage=checked.outputs["Output"], raw=raw.outputs["raw"])
        w = Wiring(cfg, config_json, raw, checked, panel)
        for name, module in modules.items():
            w.branches[name] = module.branch(w)
        first, *later = [b.registered for b in w.branches.values()]
        # A new Bento only when a gate promoted; otherwise the champions' stays the one served. One Bento
        # holds every champion, so at most one package task runs, once every family has registered.
        with dsl.If(first.outputs["promoted"] == "true"):
            built = op(steps.package)(config_json=config_json)
        with dsl.Else():
            kept = op(steps.keep)(config_json=config_json, registration=first.outputs["registration"])
            for i, task in enumerate(later):
                with dsl.If(task.outputs["promoted"] == "true") if i == 0 else dsl.Elif(task.outputs["promoted"] == "true"):
                    w.mlflow_login(op(steps.package)(config_json=config_json).after(kept))
        for task in later:
            built.after(task)
            kept.after(task)
        w.mlflow_login(built, kept)
        outputs = {name: out for b in w.branches.values() for name, out in b.outputs.items()}
        return Outputs(*(outputs[name] for name in names), dsl.OneOf(built.output, kept.output))

    return training
