"""What every benchmark shares: repeated timing, medians and p95s, the machine, the tables."""

import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Table:
    """One benchmark's figures: a titled table, plus notes printed under it."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(tuple(str(cell) for cell in cells))

    def render(self) -> str:
        """A Markdown pipe table, so a run's output pastes straight into BENCHMARKS.md."""
        widths = [max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in self.rows]
        if self.notes:
            out += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(out)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p95(samples: Sequence[float]) -> float:
    """The nearest-rank 95th percentile (with few samples this is close to the maximum)."""
    ordered = sorted(samples)
    rank = max(1, round(0.95 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def quantile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1); nan without samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def repeat(action: Callable[[], object], *, times: int, warmup: int = 1) -> list[float]:
    """Seconds taken by each of `times` calls of `action`, after `warmup` untimed calls."""
    for _ in range(warmup):
        action()
    samples: list[float] = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def ms(seconds: float, digits: int = 1) -> str:
    return f"{seconds * 1000:.{digits}f}"


def rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "inf"


def machine() -> list[str]:
    """Where and when the figures were taken: date, cores, CPU, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu}, {platform.system()} "
        f"{platform.release()}",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()}) at {sys.executable}",
    ]
