"""Request and response shapes of the API. The run configuration is the engine's
``TrainConfig``: its JSON schema is taken from the pydantic model (less ``family``,
which comes from the task set), and the service validates it with the form's words."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import Field, WithJsonSchema

from apps.experiments.services.archive import MAX_ARCHIVE_RUNS
from workers.metalearn.config import TrainConfig


def _train_config_schema() -> dict[str, Any]:
    schema = TrainConfig.model_json_schema()
    schema.pop("$defs", None)
    schema["properties"].pop("family", None)
    schema["title"] = "TrainConfig"
    return schema


#: A JSON object validated by ``run_create`` (engine ``parse_config``); documented as ``TrainConfig``.
TrainConfigJSON = Annotated[dict[str, Any], WithJsonSchema(_train_config_schema())]


class ErrorItem(Schema):
    loc: list[str | int]
    msg: str


class ValidationErrorOut(Schema):
    detail: list[ErrorItem]


class MessageOut(Schema):
    detail: str


class TeamOut(Schema):
    slug: str
    name: str
    role: str


class TaskSetOut(Schema):
    id: int
    name: str
    family: str
    created_at: datetime
    latest_version: int | None = None


class TaskSetIn(Schema):
    name: str = Field(max_length=200)
    family: str = Field(max_length=40)
    description: str = Field("", max_length=5000)
    params: dict[str, Any] = Field(default_factory=dict)


class RunOut(Schema):
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
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    archived_at: datetime | None
    tags: list[str]
    note: str = Field(description="The run's Markdown note.")
    note_version: str = Field(
        description="Send it back with a new note: a note saved since is not overwritten."
    )


class RunPageOut(Schema):
    count: int
    next_cursor: str
    prev_cursor: str
    results: list[RunOut]


class RunLaunchIn(Schema):
    experiment_id: int = Field(ge=1, le=2**62)
    taskset_id: int = Field(ge=1, le=2**62)
    queue: str = Field("cpu", max_length=10)
    config: TrainConfigJSON = Field(default_factory=dict)


class RunCloneIn(Schema):
    """Changes to the cloned run's configuration (none: the same configuration)."""

    config: TrainConfigJSON = Field(default_factory=dict)


class RunIdsIn(Schema):
    """Runs to archive or restore, by number: all of them change, or none."""

    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=MAX_ARCHIVE_RUNS)


class RunEventOut(Schema):
    created_at: datetime
    kind: str
    message: str
    attempt: int
    step: int | None = Field(None, description="The training step it is about (a loss spike), if any.")


class SeriesOut(Schema):
    metric: str
    x: list[float]
    y: list[float]
    total: int
    dropped: int
