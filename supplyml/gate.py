"""The promotion gate: a challenger against the champion on the same evidence, and a rule that knows its noise.

The evidence is the held-out origins (`features.test_origins` of a horizon each, after the training
cutoff): the challenger was fitted before the first and is re-anchored at each; the champion is
re-anchored on the same history and series. If the champion was fitted on days the evidence covers,
the comparison favours it, and the verdict says so.

Absolute bars are `mlflow.models.MetricThreshold`s checked by `mlflow.validate_evaluation_results`,
one rule at a time so the verdict says which rule decided. Against the champion, the claim is a paired
test over series (`supplyml.evidence`): the primary metric significantly better at `gate.alpha`, no
guard significantly worse. "No significant difference" keeps the champion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import mlflow
import pandas as pd
from mlflow.models import EvaluationResult, MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from supplyml import evidence
from supplyml.config import Config, GateConfig

if TYPE_CHECKING:
    from supplyml.forecasting import Forecaster, backtest

log = logging.getLogger(__name__)
FIGURES = [
    "wrmsse",
    "wspl",
    "coverage_50",
    "coverage_95",
    "total_coverage_95",
    "cycle_service_level",
    "avg_on_hand",
    "total_cost",
]


@dataclass(frozen=True)
class Metric:
    """A figure both models are scored on per unit: `column` of the units, pooled as evidence.compare does;
    `weight`: a column of per-origin weights, or None: equal weights within each origin for a mean, 1 for
    a sum."""

    name: str
    column: str
    greater_is_better: bool
    pooled: Literal["sum", "mean"]
    weight: str | None = None


# The forecaster's claim: its forecast is better (WRMSSE, the M5 measure it is tuned and chosen on), and
# neither the decisions it drives nor its intervals are worse.
PRIMARY = Metric("wrmsse", "rmsse", greater_is_better=False, pooled="mean", weight="weight")
# The held-out comparisons that judge a candidate with or without a champion are stored among a version's
# verdict evidence with these in their names: its WRMSSE against the best peer's, and its 95% intervals'
# coverage against the bar 0.95 - gate.coverage_tolerance (a first champion has no champion's guards).
PEER = "against the best peer"
BAR = "against the bar"
COVERAGE_LEVEL = 0.95  # the nominal level of the intervals the coverage figures are read from
GUARDS = (
    Metric("total_cost", "forecast.total_cost", greater_is_better=False, pooled="sum"),
    Metric("cycle_service_level", "forecast.cycle_service_level", greater_is_better=True, pooled="mean"),
    Metric("coverage_gap_95", "coverage_gap_95", greater_is_better=False, pooled="mean"),
)


def score(panel: pd.DataFrame, starts: Sequence[pd.Timestamp], forecaster: Forecaster, cfg: Config) -> backtest.Backtest:
    """`forecaster` re-anchored at each origin in `starts` on `panel` and scored on the horizon after it."""
    from supplyml.forecasting import backtest  # the forecaster's scoring: other families' steps do not import it

    return backtest.Backtest.from_origins(
        [backtest.evaluate_origin(panel, s, forecaster.with_history(panel[panel["ds"] < s]), cfg, peers=[]) for s in starts]
    )


def figures(result: backtest.Backtest, cfg: Config) -> dict[str, float]:
    """The gate's figures of the champion recipe (`backtest.MODEL`) in a backtest."""
    from supplyml.forecasting import backtest  # the forecaster's scoring: other families' steps do not import it

    out = {
        **result.table().loc[backtest.MODEL].to_dict(),
        **result.inventory.loc[backtest.POLICIES["forecast"]].to_dict(),
        **result.calibration(cfg.inventory.service_level),
    }
    out["csl_gap"] = abs(out["cycle_service_level"] - cfg.inventory.service_level)
    return {k: float(out[k]) for k in [*FIGURES, "csl_gap"]}


def paired(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    metrics: Sequence[Metric],
    cfg: GateConfig,
    seed: int,
    keys: Sequence[str] = ("unique_id", "origin"),
) -> list[evidence.Comparison]:
    """Each metric compared on the units both frames hold (joined on `keys`; the first key is the block)."""
    both = ours.merge(theirs, on=list(keys), suffixes=("", ".champion"))
    if both.empty:
        raise ValueError("the challenger and the champion share no units: they cannot be compared")
    out: list[evidence.Comparison] = []
    for m in metrics:
        # A unit without a figure (a series the zero-scale rule leaves out, a customer without new items)
        # is not evidence either way.
        sub = both[both[m.column].notna() & both[f"{m.column}.champion"].notna()]
        if sub.empty and out:  # a guard with no units (no customer bought a new item) is no evidence either way
            log.info("guard %s has no units with a figure for both models: not tested", m.name)
            continue
        if m.weight is not None:
            weight = sub[m.weight]
        elif m.pooled == "mean":  # equal weights within each origin
            weight = 1.0 / sub.groupby("origin")[keys[0]].transform("size")
        else:
            weight = pd.Series(1.0, index=sub.index)
        frame = pd.DataFrame(
            {
                "block": sub[keys[0]],
                "origin": sub["origin"],
                "challenger": sub[m.column],
                "champion": sub[f"{m.column}.champion"],
                "weight": weight,
            }
        )
        out.append(
            evidence.compare(
                m.name,
                frame,
                greater_is_better=m.greater_is_better,
                pooled=m.pooled,
                margin=cfg.margin,
                confidence=cfg.confidence,
                n_resamples=cfg.resamples,
                seed=seed,
            )
        )
    return out


def against_best_peer(result: backtest.Backtest, cfg: Config) -> list[evidence.Comparison]:
    """The champion recipe's held-out evidence, paired per series x origin: its WRMSSE against the peer with
    the lowest WRMSSE, and its 95% coverage against the bar (`against_bar`)."""
    from supplyml.forecasting import backtest  # the forecaster's scoring: other families' steps do not import it

    peers = [m for m in result.table().index if m != backtest.MODEL]
    if not peers:
        return []
    best = result.table().loc[peers, "wrmsse"].idxmin()
    theirs = result.units[["unique_id", "origin", "weight", f"{best}.rmsse"]].rename(columns={f"{best}.rmsse": "rmsse"})
    (c,) = paired(result.units[["unique_id", "origin", "weight", "rmsse"]], theirs, [PRIMARY], cfg.gate, cfg.seed)
    c.metric = f"wrmsse {PEER}, {best}"
    return [c, against_bar(result.units, "coverage_95", COVERAGE_LEVEL - cfg.gate.coverage_tolerance, cfg)]


def against_bar(units: pd.DataFrame, column: str, bar: float, cfg: Config, name: str | None = None) -> evidence.Comparison:
    """`column` (called `name` in the verdict) of per series x origin `units`, the mean over each origin's
    series, against a constant bar: `worse` means significantly short of it."""
    found = units[["unique_id", "origin", column]].dropna()
    frame = pd.DataFrame(
        {
            "block": found["unique_id"],
            "origin": found["origin"],
            "challenger": found[column],
            "champion": bar,
            "weight": 1.0 / found.groupby("origin")["unique_id"].transform("size"),
        }
    )
    return evidence.compare(
        f"{name or column} {BAR} {bar:.2f}",
        frame,
        greater_is_better=True,
        pooled="mean",
        confidence=cfg.gate.confidence,
        n_resamples=cfg.gate.resamples,
        seed=cfg.seed,
    )


def stored_peers(verdict: dict | None) -> list[evidence.Comparison]:
    """The held-out comparisons with the best peer and the bar that a version's recorded verdict carries, so
    a promotion by hand applies the same bars as the pipeline's evaluate step (the registry keeps the
    version, not its peers' forecasts)."""
    return [evidence.Comparison(**c) for c in (verdict or {}).get("evidence", []) if PEER in c["metric"] or BAR in c["metric"]]


def units(result: backtest.Backtest) -> pd.DataFrame:
    """A backtest's per series x origin units with the 95% interval's coverage gap."""
    return result.units.assign(coverage_gap_95=lambda u: (u["coverage_95"] - COVERAGE_LEVEL).abs())


def compare(
    panel: pd.DataFrame,
    starts: Sequence[pd.Timestamp],
    challenger: Forecaster,
    champion: Forecaster,
    cfg: Config,
    ours: backtest.Backtest | None = None,
) -> tuple[dict, dict, list[evidence.Comparison]]:
    """Both models' figures and the paired comparisons on the same origins and the series both know;
    the champion is re-anchored on the challenger's history, so only the fitted parameters differ.
    `ours`: the challenger's backtest on these origins, when it is already scored."""
    common = sorted(set(challenger.skus) & set(champion.skus))
    if not common:
        raise ValueError("the challenger and the champion share no series: they cannot be compared")
    log.info("champion vs challenger on %d series at %d origins from %s", len(common), len(starts), starts[0].date())
    panel = panel[panel["unique_id"].isin(common)]
    theirs = score(panel, starts, champion, cfg)
    ours = ours or score(panel, starts, challenger, cfg)
    comparisons = paired(
        units(ours)[lambda u: u["unique_id"].isin(common)], units(theirs), [PRIMARY, *GUARDS], cfg.gate, cfg.seed
    )
    return figures(ours, cfg), figures(theirs, cfg), comparisons


@dataclass
class Rule:
    name: str
    metric: str
    threshold: MetricThreshold
    against_champion: bool

    def describe(self) -> str:
        return f"{self.name}: {self.threshold}"


def rules(cfg: GateConfig) -> list[Rule]:
    """The absolute bars from config; the comparison with a champion is `significance`."""
    return [
        Rule(
            "held-out WRMSSE within gate.max_wrmsse",
            "wrmsse",
            MetricThreshold(threshold=cfg.max_wrmsse, greater_is_better=False),
            False,
        )
    ]


def significance(
    comparisons: Sequence[evidence.Comparison], alpha: float, against: str = "the champion"
) -> tuple[bool, list[str]]:
    """The claim on paired evidence: the first comparison (the primary metric) significantly better at
    one-sided level `alpha`, none of the rest (guards) significantly worse. One line per comparison."""
    primary, *guards = comparisons
    if primary.better(alpha):
        reasons = [
            f"passed: {primary.metric} significantly better than {against}{_beyond(primary)} "
            f"(p {primary.p_better:.3g} < {alpha:g}): "
            f"{primary.describe(against)}"
        ]
    elif primary.worse(alpha):
        reasons = [f"FAILED: {primary.metric} significantly worse than {against}{_beyond(primary)}: {primary.describe(against)}"]
    else:
        reasons = [
            f"FAILED: no significant difference in {primary.metric} from {against}{_beyond(primary)} at {alpha:g}, so "
            f"{against} stays: {primary.describe(against)}"
        ]
    for g in guards:
        state = "FAILED" if g.worse(alpha) else "passed"
        reasons.append(
            f"{state}: guard {g.metric} {'significantly' if g.worse(alpha) else 'not significantly'} worse "
            f"than {against}'s: {g.describe(against)}"
        )
    return primary.better(alpha) and not any(g.worse(alpha) for g in guards), reasons


def _beyond(c: evidence.Comparison) -> str:
    return f" beyond a {c.margin:.1%} margin" if c.margin else ""


@dataclass
class Verdict:
    promote: bool
    reasons: list[str]  # one line per rule: passed, or why not
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None  # the champion judged against: promotion requires it still holds the alias
    evidence: list[dict] = field(default_factory=list)  # evidence.Comparison per metric: per origin, interval, p
    shown: ClassVar[tuple[str, ...] | None] = tuple(FIGURES)  # the figures table() shows; None: all

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> pd.DataFrame:
        """Both models' figures side by side."""
        cols = {"challenger": self.challenger}
        if self.champion is not None:
            cols[f"champion (v{self.champion_version})"] = self.champion
        table = pd.DataFrame(cols)
        return table if self.shown is None else table.loc[[k for k in self.challenger if k in self.shown]]

    def summary(self) -> str:
        head = "PROMOTE" if self.promote else "KEEP the champion" if self.champion else "REJECT"
        return f"gate: {head}\n" + "\n".join(f"  - {r}" for r in self.reasons)


def decide(
    figures: dict[str, float],
    champion: dict[str, float] | None,
    cfg: GateConfig,
    champion_version: str | None = None,
    comparisons: Sequence[evidence.Comparison] = (),
    note: str | None = None,
    peers: Sequence[evidence.Comparison] = (),
) -> Verdict:
    """Judge `figures` (from `figures`) by the absolute bars and, with a champion, by `significance` of
    the paired `comparisons`; `note` (e.g. that the evidence favours the champion) joins the reasons.
    `peers`, the held-out comparisons with the best peer and the bar (`against_best_peer`): with
    `gate.must_match_best_peer`, any of them significantly worse fails the candidate, champion or not."""
    promote, reasons = check(rules(cfg), figures, champion)
    if champion is not None:
        claim, why = significance(comparisons, cfg.alpha)
        promote, reasons = promote and claim, reasons + why + ([f"note: {note}"] if note else [])
    shown = [*comparisons, *peers]
    for peer in peers:
        against = "the bar" if BAR in peer.metric else "the peer"
        if cfg.must_match_best_peer and peer.worse(cfg.alpha):
            promote = False
            reasons.append(f"FAILED: {peer.metric}: significantly worse{_beyond(peer)}: {peer.describe(against)}")
        else:
            reasons.append(
                f"{'passed' if cfg.must_match_best_peer else 'evidence'}: {peer.metric}: not "
                f"significantly worse{_beyond(peer)}: {peer.describe(against)}"
            )
    return Verdict(promote, reasons, figures, champion, champion_version, [c.to_dict() for c in shown])


def check(rules: list[Rule], candidate: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, list[str]]:
    """Every rule on `candidate` (and the champion's figures, for rules against it; skipped without
    one): whether all passed, and one line per rule. Any model family's gate is a list of rules."""
    reasons, promote = [], True
    for rule in rules:
        if rule.against_champion and champion is None:
            continue
        try:
            relative = rule.threshold.min_relative_change is not None or rule.threshold.min_absolute_change is not None
            mlflow.validate_evaluation_results(
                {rule.metric: rule.threshold},
                EvaluationResult(candidate, {}),
                EvaluationResult(champion, {}) if relative else None,
            )
            reasons.append(f"passed: {rule.name} ({_figure(rule, candidate, champion)})")
        except ModelValidationFailedException:
            promote = False
            reasons.append(f"FAILED: {rule.name} ({_figure(rule, candidate, champion)})")
    return promote, reasons


def _figure(rule: Rule, candidate: dict, champion: dict | None) -> str:
    value = f"{rule.metric} {candidate[rule.metric]:.4g}"
    if rule.against_champion and champion is not None and rule.metric in champion:
        value += f" vs champion {champion[rule.metric]:.4g}"
    return value


def describe(verdict: dict) -> str:
    """A verdict as `supplyml pipeline run` and `supplyml model compare` print it."""
    from supplyml.forecasting import backtest  # the forecaster's scoring: other families' steps do not import it

    v = Verdict(**verdict)
    where = (
        f"against champion version {v.champion_version}, same held-out origins, paired per series"
        if v.champion
        else "no champion yet"
    )
    return "\n".join([f"\nChampion gate ({where}):", backtest.format_table(v.table()), v.summary()])


def registered(out: dict, skip: int = 0) -> list[str]:
    """The registration line of a family's pipeline output, and its reasons after the first `skip`."""
    state = "promoted to champion" if out["promoted"] else "not promoted"
    return [f"Registered {out['name']} version {out['version']}: {state}.", *(f"  - {r}" for r in out["reasons"][skip:])]
