"""Where registry files live. Folders are named by database ids only."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from workers.metalearn.checkpoint_layout import META_FILE as CHECKPOINT_JSON
from workers.metalearn.checkpoint_layout import PARAMS_FILE as WEIGHTS_FILE

__all__ = [
    "CHECKPOINT_JSON",
    "TASK_MAP_FILE",
    "WEIGHTS_FILE",
    "adapted_model_dir",
    "meta_model_dir",
    "registry_root",
]

#: The task embedding map beside a meta-model's weights (``workers/task_map.py``).
TASK_MAP_FILE = "task_map.json"


def registry_root() -> Path:
    return Path(settings.DATA_DIR) / "registry"


def meta_model_dir(meta_model_id: int) -> Path:
    """``<registry>/meta/<id>/``: params.safetensors and checkpoint.json (the engine's
    checkpoint layout, so ``workers.metalearn.load_checkpoint`` reads it directly)."""
    return registry_root() / "meta" / str(int(meta_model_id))


def adapted_model_dir(adapted_model_id: int) -> Path:
    """``<registry>/adapted/<id>/``: the adapted weights as params.safetensors."""
    return registry_root() / "adapted" / str(int(adapted_model_id))
