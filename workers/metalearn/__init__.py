"""MetaWeb's meta-learning engine.

A pure PyTorch package: it imports torch and numpy, never django or celery
(``tests/workers/metalearn/test_purity.py`` enforces this). The Celery workers,
the command line (``python -m workers.metalearn``) and the tests all drive it.

Importing this package is cheap: ``config``, ``types`` and the task families are
torch-free, so the web process may validate configs and preview tasks without
paying for ``import torch``. The torch-backed entry points (``meta_train``,
``evaluate``, ``adapt``, ``load_checkpoint``) live in ``workers.metalearn.api``
and are imported lazily through ``__getattr__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "adapt",
    "evaluate",
    "load_checkpoint",
    "meta_train",
]

_LAZY = {"meta_train", "evaluate", "adapt", "load_checkpoint"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from workers.metalearn import api

        return getattr(api, name)
    raise AttributeError(f"module 'workers.metalearn' has no attribute {name!r}")
