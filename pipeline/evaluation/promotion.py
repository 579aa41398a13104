"""The promotion policy, beside the quality gate: whether a published version becomes production.

Only a model that passed the quality gate is promoted, and the flow also refuses one that
measures worse than the current production model (beyond the run-to-run noise). ``force``
promotes anyway; every decision says why, and is recorded in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.registry import Manifest

# How much worse than production a new model may measure and still count as "not worse":
# evaluation is seeded, but two retrains of one recipe differ by about this much (measured).
TOLERANCE = {"accuracy": 0.002, "tstr_accuracy": 0.003, "fd_relative": 0.05}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str  # why it was or was not promoted

    def to_manifest(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason}


def gate_decision(evaluation: dict[str, Any], force: bool) -> Decision:
    """Promote only a model that passed the quality gate, unless forced."""
    gate = evaluation.get("gate")
    if force:
        return Decision(True, "forced")
    if not gate:
        return Decision(False, "not evaluated: run `dcgan evaluate` first, or force")
    if not gate.get("passed"):
        return Decision(False, "quality gate failed: " + "; ".join(gate.get("failures", [])))
    return Decision(True, "quality gate passed")


def collapse_reason(history: list[dict[str, Any]]) -> str | None:
    """Why the run's last epoch looks collapsed (``pipeline.longtail.collapse_signals``), or None.
    A collapsed generator is never promoted, not even forced: it answers one image per class."""
    signals = history[-1].get("collapse_signals") if history else None
    if not signals:
        return None
    return f"training collapsed in epoch {history[-1].get('epoch')}: " + "; ".join(signals)


def compare_with_production(
    evaluation: dict[str, Any], production: Manifest | None, force: bool
) -> Decision:
    """Promote only through the quality gate and when not worse than production (or forced)."""
    decision = gate_decision(evaluation, force)
    if force or not decision.promote:
        return decision
    if production is None:
        return Decision(True, "quality gate passed; there is no production model yet")
    old = production.metrics
    worse = []
    for key in ("accuracy", "tstr_accuracy"):
        new_value, old_value = evaluation.get(key), old.get(key)
        if (
            new_value is not None
            and old_value is not None
            and new_value < old_value - TOLERANCE[key]
        ):
            worse.append(f"{key} {new_value:.4f} < {old_value:.4f}")
    new_fd, old_fd = evaluation.get("fd"), old.get("fd")
    if (
        new_fd is not None
        and old_fd is not None
        and new_fd > old_fd * (1 + TOLERANCE["fd_relative"])
    ):
        worse.append(f"fd {new_fd:.2f} > {old_fd:.2f}")
    if worse:
        return Decision(False, f"worse than production {production.version}: " + "; ".join(worse))
    return Decision(True, f"quality gate passed and not worse than production {production.version}")
