"""Store keys, built from database ids and fixed names only (never user input).

With the local store a key is also the file's path below ``METAWEB_DATA_DIR``:
``runs/<id>/checkpoints`` is where the engine has always written a run's checkpoints.
"""

from __future__ import annotations

__all__ = ["adapted_model", "join", "meta_model", "run", "run_checkpoints", "run_file"]


def join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part)


def run(run_id: int) -> str:
    """Everything a run's workers store: its checkpoints (and scratch, locally)."""
    return f"runs/{int(run_id)}"


def run_checkpoints(run_id: int) -> str:
    """A run's checkpoints: ``latest`` and ``step-NNNNNN/`` folders (the engine's layout)."""
    return join(run(run_id), "checkpoints")


def run_file(run_id: int, file_id: int) -> str:
    """A file the run keeps (``RunFile``), by its row's id: its name is never a path."""
    return join(run(run_id), "files", str(int(file_id)))


def meta_model(meta_model_id: int) -> str:
    """A meta-model's ``params.safetensors`` and ``checkpoint.json``."""
    return f"registry/meta/{int(meta_model_id)}"


def adapted_model(adapted_model_id: int) -> str:
    """An adapted model's ``params.safetensors``."""
    return f"registry/adapted/{int(adapted_model_id)}"
