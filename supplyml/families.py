"""The model families: the one place that names them. The CLI, the pipeline, the tuning steps and
packaging iterate over FAMILIES and reach a family's parts by their module names, so a new family is
one package of the same shape, its KFP components (`components/<its package's last name>.py`, with its
branch of the training pipeline) and one entry here (CONTRIBUTING.md, "Adding a model family").

A family's package has, where they apply: `search` (`tuning_search(cfg, frame, data_md5)`, the
Optuna search its tune steps run), `steps` (its pipeline steps), `lifecycle` (its gate), `bench`
(`run(cfg, out, root)` and `render(cfg, result, out)`) and `report`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from supplyml.config import Config


@dataclass(frozen=True)
class Family:
    name: str  # `--family NAME`, the tuning study's family
    package: str  # its package: parts are imported from it on first use (they import torch, Lightning, ...)
    registered: str  # the `registry.*` field naming its MLflow model
    output: str  # the training pipeline's output that holds its registration (its steps' `summary` reads it)
    served_as: str  # its model's role in the Bento (`serving/`): the forecaster, or an optional extra
    listed: tuple[str, ...]  # the held-out figures `supplyml model list` shows per version
    judged_by_owner: bool  # `supplyml model compare` and `promote` re-judge its versions; else only the pipeline's gate
    served_tags: tuple[str, ...]  # version tags the service reads from the model's metadata
    about: str  # one line for `--help`

    def model_name(self, cfg: Config) -> str:
        return getattr(cfg.registry, self.registered)

    def part(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")


FAMILIES = {
    f.name: f
    for f in (
        Family(
            name="forecast",
            output="registration",
            package="supplyml.forecasting",
            registered="model_name",
            served_as="forecaster",
            listed=("wrmsse", "wspl"),
            judged_by_owner=True,
            served_tags=("policy",),  # the textbook policy its held-out origins chose (forecasting.steps.POLICY_TAG)
            about="demand forecasters vs peers and the replenishment policies they drive",
        ),
        Family(
            name="recommend",
            output="recommendation",
            package="supplyml.recommending",
            registered="recommender_name",
            served_as="recommender",
            listed=("ndcg@10/all", "ndcg@10/new"),
            judged_by_owner=False,
            served_tags=(),
            about="recommenders vs peers on a temporal split (recommend.*)",
        ),
        Family(
            name="policy",
            output="policy",
            package="supplyml.replenishing",
            registered="policy_name",
            served_as="policy",
            listed=("total_cost", "cost_vs_textbook", "cycle_service_level"),
            judged_by_owner=False,
            served_tags=("policy",),  # the setting it was trained for (replenishing.lifecycle.SETTING_TAG)
            about="learned replenishment policies vs the optimum and base stock (policy.*)",
        ),
    )
}
FORECASTER = "forecast"  # every Bento serves one: the policies and /replenish decide on its paths


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r}; choose from {sorted(FAMILIES)}")
    return FAMILIES[name]
