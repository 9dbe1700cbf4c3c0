"""The comparison's display: what the compare page and its chart show.

Plain dataclasses for the template (:class:`Comparison`, :class:`ComparisonItem`),
labels and p-values as text, box plots placed on one shared SVG axis, and the data
``static/js/compare.js`` draws. The figures come from
:mod:`apps.reviews.comparison.analysis`; nothing here computes a statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.reviews.comparison.analysis import (
    BatchAnalysis,
    BoxStats,
    MeanCI,
    PairedResult,
    higher_is_better,
    outcome,
)
from apps.reviews.comparison.load import Pick, curve_values
from apps.reviews.models import Verdict

__all__ = [
    "BOX_WIDTH",
    "Comparison",
    "ComparisonItem",
    "ModelLabels",
    "PlacedBox",
    "batch_comparison",
    "p_text",
    "single_comparison",
]

#: Width of the server-side box plots, in SVG user units.
BOX_WIDTH = 1000.0
SINGLE_TASK_NOTE = (
    "One task each: curves and before/after only; a paired test needs the 600-task evaluations."
)


def p_text(p: float | None) -> str:
    """A p-value as a page shows it: ``< 0.001`` below a thousandth, else 3 digits."""
    if p is None:
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


@dataclass(frozen=True)
class PlacedBox:
    """A box plot's statistics with ``x_*`` positions on the comparison's shared axis
    (``0 .. BOX_WIDTH``; points beyond the axis sit on its edge)."""

    stats: BoxStats
    x_whisker_low: float
    x_q1: float
    x_median: float
    x_q3: float
    x_whisker_high: float

    @property
    def q1(self) -> float:
        return self.stats.q1

    @property
    def median(self) -> float:
        return self.stats.median

    @property
    def q3(self) -> float:
        return self.stats.q3

    @property
    def outliers_high(self) -> int:
        return self.stats.outliers_high

    @property
    def x_box_width(self) -> float:
        return max(self.x_q3 - self.x_q1, 1.0)


def place_box(box: BoxStats, lo: float, hi: float) -> PlacedBox:
    """``box`` on the axis from ``lo`` (x = 0) to ``hi`` (x = :data:`BOX_WIDTH`)."""
    span = hi - lo if hi > lo else 1.0

    def x(value: float) -> float:
        return round(min(max((value - lo) / span, 0.0), 1.0) * BOX_WIDTH, 1)

    return PlacedBox(
        stats=box,
        x_whisker_low=x(box.whisker_low),
        x_q1=x(box.q1),
        x_median=x(box.median),
        x_q3=x(box.q3),
        x_whisker_high=x(box.whisker_high),
    )


class ModelLabels:
    """What a table row shows of a compared model: its name and version, the latest
    verdict, and the outcome and p-value of its paired test (:attr:`compared`, None
    for the reference). Mixed into :class:`ComparisonItem` and the leaderboard's rows."""

    name: str
    version: int
    metric: str
    verdict: str | None

    @property
    def compared(self) -> PairedResult | None:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def verdict_label(self) -> str:
        return Verdict(self.verdict).label if self.verdict else ""

    @property
    def outcome(self) -> str:
        return outcome(self.compared, self.metric)

    @property
    def p_text(self) -> str:
        return p_text(self.compared.p_value if self.compared else None)


@dataclass
class ComparisonItem(ModelLabels):
    """One compared model. ``picked`` is ``"meta"`` when it was chosen as a meta-model
    (standing for its latest batch evaluation) and ``"adapted"`` otherwise;
    ``verdict`` is the latest verdict on what was picked."""

    adapted_id: int
    run_id: int
    meta_model_id: int
    picked: str
    name: str
    version: int
    algorithm: str
    taskset_name: str
    metric: str
    n_tasks: int
    n_steps: int
    curve: list[float | None]
    before: float | None
    after: float | None
    mean_ci: MeanCI | None = None
    paired: PairedResult | None = None
    hist_counts: list[int] = field(default_factory=list)
    overflow: int = 0
    box: PlacedBox | None = None
    verdict: str | None = None
    target: str = ""

    @property
    def compared(self) -> PairedResult | None:
        return self.paired

    @property
    def wilcoxon_text(self) -> str:
        return p_text(self.paired.wilcoxon_p if self.paired else None)


@dataclass
class Comparison:
    """Items in the order picked; the first is the reference of every paired test."""

    kind: str  # "batch" or "single"
    metric: str
    items: list[ComparisonItem]
    n_tasks: int
    max_steps: int
    bin_edges: list[float] = field(default_factory=list)
    box_axis: tuple[float, float] = (0.0, 1.0)
    notes: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def reference(self) -> ComparisonItem:
        return self.items[0]

    def chart_data(self) -> dict[str, Any]:
        """What ``static/js/compare.js`` draws (passed through ``json_script``)."""
        return {
            "kind": self.kind,
            "metric": self.metric,
            "steps": list(range(self.max_steps + 1)),
            "labels": [f"{item.label} · #{item.run_id}" for item in self.items],
            "curves": [item.curve for item in self.items],
            "bin_edges": self.bin_edges,
            "hist": [item.hist_counts for item in self.items],
        }


def _item(pick: Pick, verdicts: dict[tuple[str, int], str], **figures: Any) -> ComparisonItem:
    """The item of ``pick``: who it is from its rows, its figures as given."""
    adapted = pick.adapted
    meta = adapted.meta_model
    curve = figures["curve"]
    return ComparisonItem(
        adapted_id=adapted.pk,
        run_id=adapted.adaptation.run_id,
        meta_model_id=meta.pk,
        picked=pick.picked,
        name=meta.name,
        version=meta.version,
        algorithm=meta.algorithm,
        taskset_name=meta.taskset_version.taskset.name,
        metric=adapted.metric,
        n_steps=max(len(curve) - 1, 0),
        verdict=verdicts.get(pick.subject),
        **figures,
    )


def _pad_curves(items: list[ComparisonItem]) -> int:
    """Pad every curve with None to the longest; return its number of steps."""
    max_steps = max(item.n_steps for item in items)
    for item in items:
        item.curve = item.curve + [None] * (max_steps + 1 - len(item.curve))
    return max_steps


def batch_comparison(
    picks: list[Pick], analysis: BatchAnalysis, verdicts: dict[tuple[str, int], str]
) -> Comparison:
    """The page of a batch comparison: items with their figures, box plots on one
    axis from the lowest to the highest whisker, and a note when the histogram is cut."""
    lo = min(figures.box.whisker_low for figures in analysis.items)
    hi = max(figures.box.whisker_high for figures in analysis.items)
    items = [
        _item(
            pick,
            verdicts,
            n_tasks=figures.n_tasks,
            curve=figures.curve,
            before=figures.curve[0] if figures.curve else None,
            after=figures.after,
            mean_ci=figures.mean_ci,
            paired=figures.paired,
            hist_counts=figures.hist_counts,
            overflow=figures.overflow,
            box=place_box(figures.box, lo, hi),
        )
        for pick, figures in zip(picks, analysis.items, strict=True)
    ]
    edges = [float(e) for e in analysis.bin_edges]
    notes = []
    if any(item.overflow for item in items):
        notes.append(
            f"The histogram stops at {edges[-1]:.4g} (the 99th percentile of all tasks); "
            "the tasks above it are counted beside each model."
        )
    return Comparison(
        kind="batch",
        metric=items[0].metric,
        items=items,
        n_tasks=items[0].n_tasks,
        max_steps=_pad_curves(items),
        bin_edges=edges,
        box_axis=(lo, hi),
        notes=notes,
    )


def single_comparison(picks: list[Pick], verdicts: dict[tuple[str, int], str]) -> Comparison:
    """The page of single-task adaptations to one task: curves and before/after."""
    items = []
    for pick in picks:
        adapted = pick.adapted
        curve = curve_values(adapted.curve)
        spec = adapted.adaptation
        before = adapted.before if adapted.before is not None else (curve[0] if curve else None)
        items.append(
            _item(
                pick,
                verdicts,
                n_tasks=1,
                curve=curve,
                before=before,
                after=adapted.after,
                target=f"meta-test task {spec.task_index}" if spec.task_index is not None else "a typed task",
            )
        )
    return Comparison(
        kind="single",
        metric=items[0].metric,
        items=items,
        n_tasks=1,
        max_steps=_pad_curves(items),
        notes=[SINGLE_TASK_NOTE],
    )
