"""Where registry files live: in the run-file store (:mod:`apps.runfiles`), under
keys named by database ids only. The paths below are this machine's copies: with
the local store the stored folders themselves."""

from __future__ import annotations

from pathlib import Path

from apps.runfiles import keys
from apps.runfiles.store import local_path
from workers.metalearn.checkpoint_layout import META_FILE as CHECKPOINT_JSON
from workers.metalearn.checkpoint_layout import PARAMS_FILE as WEIGHTS_FILE

__all__ = [
    "CHECKPOINT_JSON", "TASK_MAP_FILE", "WEIGHTS_FILE", "adapted_model_dir", "adapted_weights_key",
    "meta_model_dir", "meta_model_files", "meta_weights_key", "registry_root",
]  # fmt: skip

#: The task embedding map beside a meta-model's weights (``workers/task_map.py``).
TASK_MAP_FILE = "task_map.json"

#: A meta-model folder's files, in the order they are stored (the record marks it complete).
meta_model_files = (WEIGHTS_FILE, CHECKPOINT_JSON)


def registry_root() -> Path:
    return local_path("registry")


def meta_model_dir(meta_model_id: int) -> Path:
    """``<registry>/meta/<id>/``: params.safetensors and checkpoint.json (the engine's
    checkpoint layout, so ``workers.metalearn.load_checkpoint`` reads it directly).
    This machine's copy: see :func:`apps.runfiles.folders.fetch_folder`."""
    return local_path(keys.meta_model(meta_model_id))


def adapted_model_dir(adapted_model_id: int) -> Path:
    """``<registry>/adapted/<id>/``: the adapted weights as params.safetensors."""
    return local_path(keys.adapted_model(adapted_model_id))


def meta_weights_key(meta_model_id: int) -> str:
    return keys.join(keys.meta_model(meta_model_id), WEIGHTS_FILE)


def adapted_weights_key(adapted_model_id: int) -> str:
    return keys.join(keys.adapted_model(adapted_model_id), WEIGHTS_FILE)
