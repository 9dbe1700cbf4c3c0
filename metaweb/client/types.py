"""The API's resources as the client returns them: plain JSON, typed."""

from __future__ import annotations

from typing import Any, TypedDict


class Team(TypedDict):
    slug: str
    name: str
    role: str


class Experiment(TypedDict):
    id: int
    name: str
    description: str
    created_at: str


class TaskSet(TypedDict):
    id: int
    name: str
    family: str
    created_at: str
    latest_version: int | None


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


class RunPage(TypedDict):
    count: int
    next_cursor: str
    prev_cursor: str
    results: list[Run]


class RunEvent(TypedDict):
    created_at: str
    kind: str
    message: str
    attempt: int


class Series(TypedDict):
    metric: str
    x: list[float]
    y: list[float]
    total: int
    dropped: int


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


class MetaModelDetail(TypedDict):
    card: dict[str, Any]
    adaptations: list[dict[str, Any]]


class Alias(TypedDict):
    model_name: str
    alias: str
    meta_model_id: int


class AdaptedResult(TypedDict):
    metric: str
    before: float | None
    after: float | None
    ci95: float | None
    n_tasks: int
    n_steps: int


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
    result: AdaptedResult | None


FINISHED = ("succeeded", "failed", "cancelled")
