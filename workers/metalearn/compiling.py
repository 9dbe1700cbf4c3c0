"""When a run is ``torch.compile``-d, and the compile cache that the workers share.

``compile: "on"`` compiles the meta-loss, ``"off"`` never does, and ``"auto"`` (the
default) compiles when the run is long enough to pay the compile back. The rule,
from ``benchmarks/engine_throughput.py`` on a 2-core CPU (second-order MAML,
1-40-40-1, meta-batch 25, 5 inner steps):

* only the fused MLP paths (:mod:`~workers.metalearn.algorithms.fused`, and the
  closed form of MAML and Meta-SGD over it, compiled with Adam as one iteration by
  :mod:`~workers.metalearn.metastep`) are compiled under ``auto``: they are the ones
  measured to gain (about 2x over eager through autograd, 3.4x for the closed form:
  272 against 928 meta-it/s, 2026-11-30); the conv net's generic path is compiled
  only when asked (``on``);
* a first compile of a graph takes 25-70 s (more under load); later runs of the
  same graph load it from the persistent cache in 2-4 s. A step gains 2-2.6 ms,
  so ``auto`` compiles when at least :data:`AUTO_ITERATIONS_CACHED` iterations
  remain and this graph has been compiled before (its marker is in the cache), or
  at least :data:`AUTO_ITERATIONS_FIRST` otherwise (for the closed form, 1.6x and
  3.7x the break-even of a 4 s and a 28 s compile; kept for every fused path);
* on a CUDA device (``gpu_check.sh`` on an H200, 2026-11-30, meta-batch 25 and
  1000) a first compile took 20-26 s, one from the cache 1.5-2.0 s, and a step
  gained 5.9-6.9 ms (eager kernel launches are what compiling removes there), so
  the same margins give :data:`AUTO_ITERATIONS_CACHED_CUDA` and
  :data:`AUTO_ITERATIONS_FIRST_CUDA`.

The cache is inductor's and AOT-autograd's own (FX graph and autograd caches, on
by default in torch 2.13), kept in one folder: :func:`use_cache_dir` points
``TORCHINDUCTOR_CACHE_DIR`` there (the workers use ``DATA_DIR/compile-cache``,
shared by every worker of the machine; the command line ``var/compile-cache``).
This module adds only a marker per graph, so that ``auto`` knows a compile will
be cheap. Torch-free at import.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Iterations left from which ``auto`` compiles a graph the cache already holds.
AUTO_ITERATIONS_CACHED = 2_500
#: Iterations left from which ``auto`` compiles a graph seen for the first time.
AUTO_ITERATIONS_FIRST = 40_000
#: The same two on a CUDA device, where a compiled step gains about three times more.
AUTO_ITERATIONS_CACHED_CUDA = 1_000
AUTO_ITERATIONS_FIRST_CUDA = 15_000
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
MARKERS = "metaweb-graphs"


def auto_rule() -> str:
    """The ``auto`` rule in a sentence, for forms and help texts."""
    return (
        f"auto: MLP runs compile once they are long enough to pay the compile back "
        f"({AUTO_ITERATIONS_CACHED:,} iterations when this shape was compiled before, from the shared "
        f"cache; {AUTO_ITERATIONS_FIRST:,} the first time; on a GPU {AUTO_ITERATIONS_CACHED_CUDA:,} "
        f"and {AUTO_ITERATIONS_FIRST_CUDA:,})."
    )


def use_cache_dir(path: str | Path) -> Path:
    """Keep torch's compile caches under ``path`` (created), unless the environment
    already names a folder (``TORCHINDUCTOR_CACHE_DIR`` wins). Call before compiling."""
    folder = Path(os.environ.setdefault(CACHE_ENV, str(Path(path).resolve())))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV)
    return Path(value) if value else None


def graph_key(facts: dict[str, Any]) -> str:
    """A stable name for a compiled graph: the hash of what shapes it (sorted JSON)."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def is_cached(key: str) -> bool:
    folder = cache_dir()
    return folder is not None and (folder / MARKERS / key).exists()


def mark_cached(key: str, facts: dict[str, Any]) -> None:
    """Record that the cache now holds the graph ``key`` (after a successful compile)."""
    folder = cache_dir()
    if folder is None:
        return
    (folder / MARKERS).mkdir(parents=True, exist_ok=True)
    (folder / MARKERS / key).write_text(json.dumps(facts, sort_keys=True, default=str))


@dataclass(frozen=True)
class Decision:
    """Whether to compile, and why (for the log and the run's record)."""

    compile: bool
    reason: str


def decide(mode: str, *, fused: bool, remaining: int, cached: bool, cuda: bool = False) -> Decision:
    """Apply the rule of the module docstring to a run with ``remaining`` iterations
    (on a CUDA device when ``cuda``)."""
    if mode == "on":
        return Decision(True, "compile: on")
    if mode == "off":
        return Decision(False, "compile: off")
    if not fused:
        return Decision(False, "compile: auto leaves the generic (conv) path eager")
    if cuda:
        need = AUTO_ITERATIONS_CACHED_CUDA if cached else AUTO_ITERATIONS_FIRST_CUDA
    else:
        need = AUTO_ITERATIONS_CACHED if cached else AUTO_ITERATIONS_FIRST
    seen = "already in the compile cache" if cached else "not in the compile cache yet"
    verdict = "compiles" if remaining >= need else "stays eager"
    reason = f"compile: auto {verdict}: {remaining:,} iterations left, graph {seen}, {need:,} needed"
    return Decision(remaining >= need, reason)
