"""How a process that trains is set up: the C allocator, torch's threads, the compile cache.

:func:`prepare_process` is called once by every process that trains, so that no
user has to set anything: the Celery workers (``worker_init``, before the pool
forks; ``metaweb/celery.py``), ``make run``'s embedded worker
(``workers/embedded.py``) and the command line (``python -m workers.metalearn``).

**Allocator.** glibc gives a freed block back to the OS when it was ``mmap``-ed
(above ``M_MMAP_THRESHOLD``) or when the heap's free top passes
``M_TRIM_THRESHOLD``; the next step then faults the same pages in again. The conv
net's activations are tens of MB per step, so glyphs ProtoNets spent 40.6 s of
56.2 s in the kernel. :func:`tune_allocator` calls ``mallopt`` through ctypes,
which works inside a running process (the ``MALLOC_*_`` environment variables
are read only at start-up): blocks up to 32 MiB (glibc's ceiling for this
setting) come from the heap, the heap keeps up to 2 GiB of free top (``mallopt``
takes an ``int``), and grows in 256 MiB steps. Freed memory stays with the
process for reuse instead of going back to the OS. Elsewhere than glibc it does
nothing and says so.

**Threads.** :func:`torch_threads`: the CPUs this process may use (affinity and
cgroup quota), shared among the worker's processes, less any reserved for a
server in the same process; ``METAWEB_TORCH_THREADS`` overrides it.

Torch-free at import: torch is imported only to set threads once it is loaded.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from workers.metalearn.compiling import use_cache_dir

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**31 - 1
TOP_PAD = 256 * 2**20
THREADS_ENV = "METAWEB_TORCH_THREADS"
#: Variables torch (OpenMP, MKL) reads for its thread count when first imported.
TORCH_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def tune_allocator() -> bool:
    """Apply the allocator settings of the module docstring; False where the C
    library is not glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has no mallopt)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)


def _cgroup_cpus() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup (v2) CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def torch_threads(*, processes: int = 1, reserve: int = 0) -> int:
    """Torch threads for each of ``processes`` training processes sharing this
    machine's CPUs, ``reserve`` of them left to something else (a web server);
    ``METAWEB_TORCH_THREADS`` wins when set."""
    chosen = os.environ.get(THREADS_ENV, "").strip()
    if chosen:
        if not chosen.isdigit() or int(chosen) < 1:
            raise ValueError(f"{THREADS_ENV}: give a whole number of threads, at least 1 (got {chosen!r})")
        return int(chosen)
    return max(1, (available_cpus() - reserve) // max(1, processes))


def set_threads(threads: int) -> None:
    """Torch's intra-op threads: through the environment before torch is imported
    (a thread count already in the environment wins), and directly once it is."""
    for name in TORCH_THREAD_VARS:
        os.environ.setdefault(name, str(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@dataclass(frozen=True)
class Prepared:
    allocator: bool
    threads: int
    compile_cache: Path


def prepare_process(*, threads: int, compile_cache: str | Path) -> Prepared:
    """Allocator, threads and compile cache for a process that trains (idempotent)."""
    allocator = tune_allocator()
    set_threads(threads)
    folder = use_cache_dir(compile_cache)
    return Prepared(allocator=allocator, threads=int(os.environ["OMP_NUM_THREADS"]), compile_cache=folder)
