"""MLflow model registry: versions with lineage, and the gate that guards the `champion` alias."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from supplyml.config import GateConfig

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass
class GateDecision:
    passed: bool  # met the absolute bar
    promote: bool  # and may take the champion alias now
    reasons: list[str] = field(default_factory=list)


def gate(metrics: dict[str, float], peers: dict[str, dict[str, float]], champion: dict[str, float] | None,
         cfg: GateConfig, selection: dict | None = None) -> GateDecision:
    """Decide on a candidate. The absolute bar: WRMSSE within gate.max_wrmsse on the held-out horizon,
    and, on the validation origins it was chosen on (`selection`, from forecasting.selection), WRMSSE
    no worse than the best single peer's. The seam for champion-versus-challenger is `champion`:
    today any existing champion stays, and a passing candidate becomes `challenger`."""
    reasons = []
    if not metrics["wrmsse"] <= cfg.max_wrmsse:
        reasons.append(f"WRMSSE {metrics['wrmsse']:.3f} > gate.max_wrmsse {cfg.max_wrmsse}")
    if cfg.must_match_best_peer and selection:
        scores = selection["validation"]
        singles = [n for n in selection["peers"] if n in scores]
        if singles:
            best = min(singles, key=lambda n: scores[n]["wrmsse"])
            chosen = scores[selection["chosen"]]["wrmsse"]
            if not chosen <= scores[best]["wrmsse"]:
                reasons.append(f"validation WRMSSE {chosen:.3f} is worse than the best peer's, {best} "
                               f"{scores[best]['wrmsse']:.3f}")
    passed = not reasons
    if passed and champion is not None:
        reasons.append("a champion exists; the champion-versus-challenger comparison is not enabled yet")
    return GateDecision(passed, passed and champion is None, reasons or ["passed the gate"])


def champion_version(name: str, client: MlflowClient | None = None):
    client = client or MlflowClient()
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register(model_uri: str, name: str, tags: dict[str, str]):
    """Create a model version carrying lineage tags."""
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    log.info("registered %s version %s", name, version.version)
    return version


def apply_decision(name: str, version: str, decision: GateDecision, client: MlflowClient | None = None) -> str | None:
    """Move an alias as the gate decided; returns the alias set, if any."""
    client = client or MlflowClient()
    client.set_model_version_tag(name, version, "gate", "; ".join(decision.reasons))
    alias = CHAMPION if decision.promote else CHALLENGER if decision.passed else None
    if alias:
        client.set_registered_model_alias(name, alias, version)
        log.info("%s version %s is now %s", name, version, alias)
    return alias
