"""The training pipeline: wiring only. Every step is a component from `components.steps`."""

from typing import NamedTuple

from kfp import dsl

from components import steps
from supplyml.config import Config


def build(cfg: Config):
    """The pipeline for this config. Components take their image from config, so the same code runs
    locally on `kfp.local` and on a cluster. Only ops that `kfp.local` also runs are used here."""

    def component(func):
        return dsl.component(func, base_image=cfg.pipeline.image, install_kfp_package=False)

    ingest, validate, featurize, tune, train, evaluate, register, package, keep = map(component, [
        steps.ingest, steps.validate, steps.featurize, steps.tune, steps.train, steps.evaluate,
        steps.register, steps.package, steps.keep])

    def gpu(task):
        # Honoured by Kubeflow; kfp.local ignores resource requests and Lightning falls back to CPU.
        if cfg.pipeline.accelerator_limit:
            task.set_accelerator_type(cfg.pipeline.accelerator_type).set_accelerator_limit(
                cfg.pipeline.accelerator_limit)
        return task

    @dsl.pipeline(name=cfg.pipeline.name, description="Order lines to a champion forecaster and a Bento")
    def training(config_json: str = cfg.to_json(), root: str = "/app") -> NamedTuple(
            "Outputs", evaluation=str, registration=str, bento=str):
        raw = ingest(config_json=config_json, root=root, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        checked = validate(config_json=config_json, lineage=raw.outputs["Output"], raw=raw.outputs["raw"])
        panel = featurize(config_json=config_json, lineage=checked.outputs["Output"], raw=raw.outputs["raw"])
        best = gpu(tune(config_json=config_json, lineage=panel.outputs["Output"], panel=panel.outputs["panel"]))
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
        return NamedTuple("Outputs", evaluation=str, registration=str, bento=str)(
            scored.outputs["Output"], registered.outputs["registration"], dsl.OneOf(built.output, kept.output))

    return training
