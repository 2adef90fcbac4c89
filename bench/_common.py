"""What the benchmarks share: the command line, medians of per-round ratios, and the Targets line."""

from __future__ import annotations

import shlex
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Target", "command", "median_ratio", "print_targets"]


def command() -> str:
    """The command this benchmark was run with, to print beside its tables."""
    return "python " + " ".join(shlex.quote(arg) for arg in sys.argv)


def median_ratio(mine: Sequence[float], theirs: Sequence[float]) -> float:
    """The median of the per-round ratios ``mine[i] / theirs[i]`` (rounds interleave, so a
    noisy round hits both sides of a ratio alike)."""
    return statistics.median(m / t for m, t in zip(mine, theirs))


@dataclass(frozen=True)
class Target:
    """One target of the issue: what is measured, its value, the bound and which way it goes."""

    name: str
    value: float
    bound: float
    at_most: bool = True  # value <= bound; False: value >= bound
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def __str__(self) -> str:
        sign = "<=" if self.at_most else ">="
        verdict = "met" if self.met else "MISSED"
        return f"{self.name} {self.value:.3g}{self.unit} ({sign} {self.bound:g}{self.unit}) {verdict}"


def print_targets(targets: Sequence[Target]) -> bool:
    """Print the one-line ``Targets:`` section (each target met or MISSED); True when all are met."""
    print("\nTargets: " + "; ".join(str(t) for t in targets))
    return all(t.met for t in targets)
