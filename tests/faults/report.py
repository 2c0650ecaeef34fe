"""The fault-injection suite's figures, printed at the end of the pytest run (`make test`, `make soak`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FaultFigures:
    case: str
    tasks: int
    faults_injected: int
    outcomes: Counter[str]
    duplicate_effects: int
    detail: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        outcomes = ", ".join(f"{state} {count}" for state, count in sorted(self.outcomes.items()))
        extra = "".join(f"; {name} {value}" for name, value in self.detail.items())
        return (
            f"{self.case}: {self.tasks} tasks, {self.faults_injected} faults injected; {outcomes}; "
            f"duplicate effects {self.duplicate_effects}{extra}"
        )


FIGURES: list[FaultFigures] = []


def record_figures(figures: FaultFigures) -> None:
    FIGURES.append(figures)


def summary_lines() -> list[str]:
    if not FIGURES:
        return []
    total_tasks = sum(f.tasks for f in FIGURES)
    total_faults = sum(f.faults_injected for f in FIGURES)
    total_duplicates = sum(f.duplicate_effects for f in FIGURES)
    return [
        *(f.line() for f in FIGURES),
        f"all cases: {total_tasks} tasks, {total_faults} faults injected, duplicate effects {total_duplicates}",
    ]
