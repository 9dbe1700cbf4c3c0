"""The API's resources as the client returns them: plain JSON, typed.

Generated from the API's OpenAPI schema by ``python manage.py client_types``
(``apps/api/client_types.py``): do not edit by hand.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Team(TypedDict):
    slug: str
    name: str
    role: str


class TaskSet(TypedDict):
    id: int
    name: str
    family: str
    created_at: str
    latest_version: int | None


class Experiment(TypedDict):
    id: int
    name: str
    description: str
    created_at: str
    tags: list[str]
    note: str
    note_version: str


class Run(TypedDict):
    id: int
    kind: str
    status: str
    algorithm: str
    experiment_id: int
    taskset_id: int
    taskset_version: int
    queue: str
    step: int
    total_steps: int
    seed: int
    config: dict[str, Any]
    summary: dict[str, Any]
    error: str
    cloned_from_id: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    archived_at: str | None
    tags: list[str]
    note: str
    note_version: str


class RunPage(TypedDict):
    count: int
    next_cursor: str
    prev_cursor: str
    results: list[Run]


class Series(TypedDict):
    metric: str
    x: list[float]
    y: list[float]
    total: int
    dropped: int


class RunEvent(TypedDict):
    created_at: str
    kind: str
    message: str
    attempt: int
    step: int | None


class RunFile(TypedDict):
    id: int
    name: str
    size: int
    sha256: str
    created_by: str
    created_at: str


class SavedView(TypedDict):
    id: int
    name: str
    query: str
    columns: list[str]
    sort: str
    kind: str
    filters: dict[str, Any]
    list_url: str
    created_by: str
    created_at: str


class Sweep(TypedDict):
    id: int
    name: str
    status: str
    message: str
    strategy: str
    experiment_id: int
    taskset_id: int
    taskset_version: int
    queue: str
    metric: str
    maximize: bool
    max_concurrent: int
    early_stop: bool
    dimensions: dict[str, Any]
    planned: int
    waiting: int
    created_by: str
    created_at: str


class SweepPage(TypedDict):
    next_before: int | None
    results: list[Sweep]


class Importance(TypedDict):
    setting: str
    test: str
    n: int
    effect: float | None
    p: float | None
    forest: float | None
    forest_r2: float | None
    not_monotone: bool
    reading: str


class Leader(TypedDict):
    rank: int | None
    run_id: int
    status: str
    step: int
    total_steps: int
    value: float | None
    value_step: int | None
    point: dict[str, Any]
    order: int


class SeedGroup(TypedDict):
    run_ids: list[int]
    label: dict[str, Any]
    n: int
    mean: float | None
    half_width: float | None


class SweepDetail(TypedDict):
    id: int
    name: str
    status: str
    message: str
    strategy: str
    experiment_id: int
    taskset_id: int
    taskset_version: int
    queue: str
    metric: str
    maximize: bool
    max_concurrent: int
    early_stop: bool
    dimensions: dict[str, Any]
    planned: int
    waiting: int
    created_by: str
    created_at: str
    leaderboard: list[Leader]
    across_seeds: list[SeedGroup]
    importance: list[Importance]


class Points(TypedDict):
    stored: int
    stop: bool


class MetaModel(TypedDict):
    id: int
    name: str
    version: int
    source: str
    algorithm: str
    experiment_id: int
    training_run_id: int | None
    weights_sha256: str
    created_at: str


class MetaModelPage(TypedDict):
    next_before: int | None
    results: list[MetaModel]


class LineageAdaptation(TypedDict):
    id: int
    run_id: int
    status: str


class MetaModelDetail(TypedDict):
    card: dict[str, Any]
    adaptations: list[LineageAdaptation]


class Alias(TypedDict):
    model_name: str
    alias: str
    meta_model_id: int


class Adaptation(TypedDict):
    run_id: int
    meta_model_id: int
    status: str
    error: str
    target: str
    task_index: int | None
    steps: int
    lr: float
    shots: int | None
    result: Adapted | None


class Adapted(TypedDict):
    metric: str
    before: float | None
    after: float | None
    ci95: float | None
    n_tasks: int
    n_steps: int


class BoxStats(TypedDict):
    minimum: float
    whisker_low: float
    q1: float
    median: float
    q3: float
    whisker_high: float
    maximum: float
    outliers_low: int
    outliers_high: int


class ComparisonItem(TypedDict):
    run_id: int
    meta_model_id: int
    picked: str
    name: str
    version: int
    algorithm: str
    taskset_name: str
    target: str
    metric: str
    n_tasks: int
    n_steps: int
    before: float | None
    after: float | None
    curve: list[float | None]
    mean: MeanCI | None
    paired: Paired | None
    outcome: str
    verdict: str | None
    box: BoxStats | None
    hist_counts: list[int]
    overflow: int


class Comparison(TypedDict):
    kind: str
    metric: str
    higher_is_better: bool
    n_tasks: int
    max_steps: int
    notes: list[str]
    bin_edges: list[float]
    items: list[ComparisonItem]


class MeanCI(TypedDict):
    mean: float
    low: float
    high: float
    half_width: float
    n: int


class Paired(TypedDict):
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float | None
    df: int
    p_value: float
    wilcoxon_p: float
    alpha: float
    significant: bool


#: A run's statuses once it will not change again.
FINISHED = ("succeeded", "failed", "cancelled")
