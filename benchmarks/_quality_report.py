"""Reporting pieces that ``benchmarks/quality.py`` and its glyph rows (``_quality_glyphs.py``)
share: timestamped log lines, a progress reporter, the peak RSS, and scores with their 95% CI."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass

import numpy as np

from workers.metalearn.types import NullReporter

#: Fixed meta-test tasks every model is scored on (sinusoid and glyphs alike).
TEST_TASKS = 600


def peak_rss_mb() -> float:
    """Peak resident set size of this process plus its (waited-for) children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024.0  # kilobytes on Linux


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Progress(NullReporter):
    """A :class:`~workers.metalearn.types.Reporter` that prints about ten progress lines a run."""

    def __init__(self, label: str, iterations: int):
        self.label = label
        self.iterations = iterations
        self.every = max(1, iterations // 10)
        self.started = time.perf_counter()
        self.recent: list[float] = []

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.recent.append(float(metrics["loss"]))
        if step % self.every and step != self.iterations:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / step * (self.iterations - step)
        extra = f" acc {metrics['accuracy']:.3f}" if "accuracy" in metrics else ""
        log(
            f"  {self.label}: step {step}/{self.iterations} loss {np.mean(self.recent):.4f}{extra} "
            f"({step / elapsed:.1f} it/s, {elapsed:.0f}s, eta {eta:.0f}s)"
        )
        self.recent.clear()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        log(f"  {self.label}: step {step} meta-val {shown}")


def ci95(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return 0.0
    return float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


@dataclass
class Score:
    mean: float
    ci: float

    @classmethod
    def of(cls, values: np.ndarray) -> Score:
        values = np.asarray(values, dtype=np.float64)
        return cls(float(values.mean()), ci95(values))

    def mse(self) -> str:
        if not math.isfinite(self.mean):
            return "diverged"
        return f"{self.mean:.3f} ± {self.ci:.3f}"

    def pct(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.ci:.1f}%"
