"""Uploading an external meta-model: a safetensors file of meta-parameters and the
training config it belongs to.

Torch-free: uploads are checked by reading the safetensors header
(:mod:`apps.registry.weights`) against :func:`workers.metalearn.specs.expected_shapes`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.utils.text import slugify

from apps.experiments.models import Experiment
from apps.experiments.services.runs import code_version
from apps.registry import storage
from apps.registry.models import MetaModel, MetaModelSource
from apps.registry.services.metamodels import create_next_version
from apps.registry.services.staging import copy_hashed, file_chunks, staging_dir, with_files
from apps.registry.weights import WeightsError, read_safetensors_header
from apps.runfiles.store import StoreUnavailable
from apps.tasksets.files import version_data_path
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role, Team
from apps.teams.quotas import quota_check_storage
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from workers.metalearn.checkpoint_layout import FORMAT
from workers.metalearn.config import ConfigError, config_to_dict, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.shapes import family_info_dict, shape_differences
from workers.metalearn.specs import expected_shapes
from workers.metalearn.types import DataError

__all__ = ["CHECKPOINT_FORMAT", "MAX_UPLOAD_BYTES", "metamodel_upload"]


#: ``workers.metalearn.checkpoint.FORMAT`` (that module imports torch).
CHECKPOINT_FORMAT = FORMAT
#: Uploads larger than this are refused while they are copied.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
#: A config larger than this (as compact JSON) is refused before it is parsed.
MAX_CONFIG_BYTES = 16 * 1024
#: How many differences an upload's shape error lists.
SHAPE_ERRORS_SHOWN = 5


def _upload_config(*, config: Any, version: TaskSetVersion) -> tuple[Any, dict[str, Any], Any]:
    """The parsed config (family from the task-set version), the family's facts as
    a checkpoint records them, and the family. ValidationError on ``config`` or
    ``taskset_version``."""
    if not isinstance(config, dict):
        raise ValidationError({"config": "The configuration must be a JSON object."})
    try:
        size = len(json.dumps(config, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError):
        raise ValidationError(
            {"config": "The configuration must be plain JSON (numbers, text, lists)."}
        ) from None
    if size > MAX_CONFIG_BYTES:
        raise ValidationError(
            {"config": f"The configuration is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}."}
        )
    data = dict(config)
    data["family"] = {"name": version.taskset.family, "version": 1, "params": version.params or {}}
    try:
        parsed = parse_config(data)
    except ConfigError as exc:
        raise ValidationError({"config": [f"{k}: {v}" for k, v in exc.errors.items()]}) from None
    try:
        family = make_family(parsed.family, data_path=version_data_path(version))
    except (ConfigError, DataError) as exc:
        raise ValidationError({"taskset_version": f"The task set cannot be used: {exc}"}) from None
    except StoreUnavailable as exc:
        raise ValidationError({"taskset_version": str(exc)}) from None
    except OSError:
        raise ValidationError({"taskset_version": "The task set's data file cannot be read."}) from None
    return parsed, family_info_dict(family, parsed), family


def _json_scalar(value: Any) -> Any:
    """numpy scalars in a family's ``describe()`` as plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _check_shapes(*, path: Path, expected: dict[str, list[int]]) -> dict[str, list[int]]:
    try:
        header = read_safetensors_header(path)
    except WeightsError as exc:
        raise ValidationError({"weights_file": str(exc)}) from None
    actual = {name: tensor.shape for name, tensor in header.items()}
    differences = shape_differences(expected, actual)
    if differences:
        shown = "; ".join(differences[:SHAPE_ERRORS_SHOWN])
        more = len(differences) - SHAPE_ERRORS_SHOWN
        tail = f" (and {more} more)" if more > 0 else ""
        raise ValidationError(
            {
                "weights_file": f"The tensors do not fit this configuration's backbone "
                f"({len(differences)} difference{'s' if len(differences) != 1 else ''}): {shown}{tail}."
            }
        )
    return actual


def _clean_name(name: str) -> str:
    """The model name as a slug; ValidationError on ``name``."""
    name = slugify(name or "")
    max_length = MetaModel._meta.get_field("name").max_length or 80
    if not name:
        raise ValidationError({"name": "Give the model a name with letters or digits, e.g. sine-maml."})
    if len(name) > max_length:
        raise ValidationError({"name": f"Use at most {max_length} characters."})
    return name


def _checkpoint_record(parsed: Any, family: Any, family_info: dict[str, Any], shapes: dict) -> dict:
    """The ``checkpoint.json`` of an upload, as ``load_checkpoint`` accepts it."""
    return {
        "format": CHECKPOINT_FORMAT,
        "step": 0,
        "algorithm": parsed.algorithm,
        "config": config_to_dict(parsed),
        "family": family.describe(),
        "family_info": family_info,
        "shapes": shapes,
        "dtypes": {k: "float32" for k in shapes},
        "optimizer": {},
        "rng": {},
        "metrics": {},
        "source": "upload",
    }


def _stage_upload(
    *, weights_file: IO[bytes], config: dict[str, Any], version: TaskSetVersion
) -> tuple[Path, Any, str, int]:
    """Check the config, copy the file into a staging folder and check its tensors,
    write the checkpoint JSON beside it: the folder, the parsed config, the weights'
    sha256 and size. On error the folder is removed."""
    parsed, family_info, family = _upload_config(config=config, version=version)
    try:
        expected = expected_shapes(parsed, family_info)
    except ConfigError as exc:
        raise ValidationError({"config": [f"{k}: {v}" for k, v in exc.errors.items()]}) from None
    staged = staging_dir()
    try:
        weights = staged / storage.WEIGHTS_FILE
        sha256, size = copy_hashed(file_chunks(weights_file), weights, limit=MAX_UPLOAD_BYTES)
        shapes = _check_shapes(path=weights, expected=expected)
        checkpoint = _checkpoint_record(parsed, family, family_info, shapes)
        (staged / storage.CHECKPOINT_JSON).write_text(
            json.dumps(checkpoint, indent=1, sort_keys=True, default=_json_scalar), encoding="utf-8"
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged, parsed, sha256, size


def metamodel_upload(
    *,
    team: Team,
    actor: AnyUser,
    experiment: Experiment,
    taskset_version: TaskSetVersion,
    name: str,
    config: dict[str, Any],
    weights_file: IO[bytes],
    description: str = "",
) -> MetaModel:
    """Register an external meta-model: a safetensors file of meta-parameters and
    the training config it belongs to. Members only.

    The config is validated by the engine's ``parse_config`` with the task set's
    family; the file must be safetensors (a pickle, a zip, garbage or a truncated
    file is refused; nothing is unpickled), its tensors float32 and named and shaped
    as the config's algorithm expects on the family. The weights are stored as
    uploaded, beside a ``checkpoint.json`` that ``load_checkpoint`` accepts.
    ValidationErrors name the form field; on error nothing is saved.
    """
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    if experiment.team_id != team.pk:
        raise ValidationError({"experiment": "Choose one of this team's experiments."})
    if taskset_version.taskset.team_id != team.pk:
        raise ValidationError({"taskset_version": "Choose one of this team's task sets."})
    name = _clean_name(name)
    size_declared = int(getattr(weights_file, "size", 0) or 0)
    quota_check_storage(team_id=team.pk, adding=size_declared, field="weights_file")
    staged, parsed, sha256, size = _stage_upload(
        weights_file=weights_file, config=config, version=taskset_version
    )

    def create() -> MetaModel:
        return create_next_version(
            team=team,
            name=name,
            experiment=experiment,
            source=MetaModelSource.UPLOAD,
            training_run=None,
            taskset_version=taskset_version,
            algorithm=parsed.algorithm,
            config=config_to_dict(parsed),
            metrics={},
            code_version=code_version(),
            weights_sha256=sha256,
            weights_bytes=size,
            description=(description or "").strip() or f"Uploaded by {actor.get_username()}.",
            created_by=actor,
        )

    return with_files(staged, create)
