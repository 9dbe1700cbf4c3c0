"""Synthetic 1-D regression families: ``sinusoid`` (Finn et al. 2017) and ``harmonic``.

Each task is a function ``y = f_desc(x)``, fully described by its description
vector ``desc``; :meth:`truth` evaluates ``f_desc`` anywhere (the review pages plot
it). Support and query inputs are drawn uniformly from ``[x_min, x_max]``; targets
are noiseless, so ``y == truth(desc, x)`` exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from workers.metalearn.families._base import BaseFamily, FamilyParams
from workers.metalearn.types import EpisodeSpec, Split, TaskBatch


def _check_range(low: float, high: float, low_name: str, high_name: str) -> None:
    if not high > low:
        raise ValueError(f"{high_name}: must be greater than {low_name} ({low})")


class SinusoidParams(FamilyParams):
    """Finn et al. 2017, "Model-Agnostic Meta-Learning", section 5.1: amplitude
    U[0.1, 5], phase U[0, pi], inputs U[-5, 5]."""

    amplitude_min: float = Field(0.1, ge=0, le=100, description="Smallest amplitude.")
    amplitude_max: float = Field(5.0, gt=0, le=100, description="Largest amplitude.")
    phase_min: float = Field(0.0, ge=-2 * math.pi, le=2 * math.pi, description="Smallest phase (radians).")
    phase_max: float = Field(math.pi, ge=-2 * math.pi, le=2 * math.pi, description="Largest phase (radians).")
    x_min: float = Field(
        -5.0, ge=-1000, le=1000, description="Inputs are drawn uniformly from [x_min, x_max]."
    )
    x_max: float = Field(5.0, ge=-1000, le=1000, description="Upper end of the input range.")

    @model_validator(mode="after")
    def _ranges(self) -> SinusoidParams:
        _check_range(self.amplitude_min, self.amplitude_max, "amplitude_min", "amplitude_max")
        _check_range(self.phase_min, self.phase_max, "phase_min", "phase_max")
        _check_range(self.x_min, self.x_max, "x_min", "x_max")
        return self


class HarmonicParams(FamilyParams):
    """``y = a1 sin(w x + p1) + a2 sin(2 w x + p2)``: a fundamental and its first
    overtone. ``a1 ~ U[amplitude_min, amplitude_max]``, ``a2 ~ U[0, overtone_max]``,
    ``w ~ U[frequency_min, frequency_max]``, phases ``~ U[0, 2 pi)``, inputs U[-5, 5]."""

    amplitude_min: float = Field(0.1, ge=0, le=100, description="Smallest fundamental amplitude a1.")
    amplitude_max: float = Field(5.0, gt=0, le=100, description="Largest fundamental amplitude a1.")
    overtone_max: float = Field(2.5, ge=0, le=100, description="Largest overtone amplitude a2 (from 0).")
    frequency_min: float = Field(0.5, gt=0, le=100, description="Smallest angular frequency w.")
    frequency_max: float = Field(2.0, gt=0, le=100, description="Largest angular frequency w.")
    x_min: float = Field(
        -5.0, ge=-1000, le=1000, description="Inputs are drawn uniformly from [x_min, x_max]."
    )
    x_max: float = Field(5.0, ge=-1000, le=1000, description="Upper end of the input range.")

    @model_validator(mode="after")
    def _ranges(self) -> HarmonicParams:
        _check_range(self.amplitude_min, self.amplitude_max, "amplitude_min", "amplitude_max")
        _check_range(self.frequency_min, self.frequency_max, "frequency_min", "frequency_max")
        _check_range(self.x_min, self.x_max, "x_min", "x_max")
        return self


class _RegressionFamily(BaseFamily):
    kind = "regression"
    input_shape = (1,)
    desc_names: tuple[str, ...]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.desc_dim = len(cls.desc_names)

    def __init__(self, params: FamilyParams):
        self.params = params

    def desc_ranges(self) -> tuple[tuple[float, float], ...]:
        """Each description value's range, in ``desc_names`` order: tasks draw each
        uniformly from it (the task-space explorer's sliders span them)."""
        raise NotImplementedError

    def _draw_desc(self, rng: np.random.Generator) -> tuple[float, ...]:
        return tuple(float(rng.uniform(low, high)) for low, high in self.desc_ranges())

    def input_range(self) -> tuple[float, float]:
        return float(self.params.x_min), float(self.params.x_max)  # type: ignore[attr-defined]

    def truth(self, desc: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The true function of the task(s) ``desc`` at ``x``.

        ``desc`` is ``[..., D]`` and ``x`` is ``[..., N, 1]`` with matching leading
        dimensions (``[D]`` with ``[N, 1]`` for one task); returns float32 ``[..., N, 1]``.
        Computed in float64, then rounded.
        """
        desc = np.asarray(desc, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        cols = [desc[..., j, None, None] for j in range(self.desc_dim or 0)]
        return self._f(cols, x).astype(np.float32)

    def _f(self, desc: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _build(self, split: Split, episode: EpisodeSpec, task_ids: np.ndarray) -> TaskBatch:
        p = self.params
        n = episode.shots + episode.query
        desc = np.empty((len(task_ids), self.desc_dim or 0), dtype=np.float32)
        x = np.empty((len(task_ids), n, 1), dtype=np.float32)
        for row, task_id in enumerate(task_ids):
            rng = self.task_rng(split, task_id)
            desc[row] = self._draw_desc(rng)
            x[row, :, 0] = rng.uniform(p.x_min, p.x_max, size=n)  # type: ignore[attr-defined]
        y = self.truth(desc, x)
        s = episode.shots
        return TaskBatch(
            x_support=x[:, :s],
            y_support=y[:, :s],
            x_query=x[:, s:],
            y_query=y[:, s:],
            desc=desc,
            task_ids=task_ids,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "desc_names": list(self.desc_names), "metric": "mse"}


class SinusoidFamily(_RegressionFamily):
    """``y = amplitude * sin(x + phase)``; ``desc = (amplitude, phase)``."""

    name = "sinusoid"
    desc_names = ("amplitude", "phase")
    params: SinusoidParams

    def desc_ranges(self) -> tuple[tuple[float, float], ...]:
        p = self.params
        return (p.amplitude_min, p.amplitude_max), (p.phase_min, p.phase_max)

    def _f(self, desc: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        amplitude, phase = desc
        return amplitude * np.sin(x + phase)


class HarmonicFamily(_RegressionFamily):
    """``y = a1 sin(w x + p1) + a2 sin(2 w x + p2)``; ``desc = (a1, a2, w, p1, p2)``."""

    name = "harmonic"
    desc_names = ("a1", "a2", "w", "p1", "p2")
    params: HarmonicParams

    def desc_ranges(self) -> tuple[tuple[float, float], ...]:
        p = self.params
        return (
            (p.amplitude_min, p.amplitude_max),
            (0.0, p.overtone_max),
            (p.frequency_min, p.frequency_max),
            (0.0, 2 * math.pi),
            (0.0, 2 * math.pi),
        )

    def _f(self, desc: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        a1, a2, w, p1, p2 = desc
        return a1 * np.sin(w * x + p1) + a2 * np.sin(2 * w * x + p2)
