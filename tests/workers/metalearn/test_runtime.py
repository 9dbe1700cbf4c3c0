"""Process setup for training: the allocator keeps freed buffers, the thread rule, the CLI.

The allocator is checked by what it is for: page faults. A process that allocates,
touches and frees ten 8 MiB buffers per "step" faults their pages in again on every
step with glibc's defaults (the heap's free top is given back to the OS), and not
at all once :func:`tune_allocator` has run. Counted with ``getrusage``, not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.metalearn import runtime

ROOT = Path(__file__).resolve().parents[3]

FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from workers.metalearn.runtime import tune_allocator
    assert tune_allocator()
def step():
    arrays = [np.ones(2**20) for _ in range(10)]  # ten 8 MiB buffers, every page touched
    del arrays
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_step(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_stops_faulting_freed_buffers_back_in():
    glibc, tuned = faults_per_step("glibc"), faults_per_step("tuned")
    assert glibc > 2000, f"glibc's defaults should refault ~80 MiB per step here (got {glibc})"
    assert tuned < 50, f"the tuned allocator still faults {tuned} pages per step"


def test_thread_rule(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 8)
    assert runtime.torch_threads() == 8
    assert runtime.torch_threads(processes=3) == 2
    assert runtime.torch_threads(reserve=1) == 7
    monkeypatch.setattr(runtime, "available_cpus", lambda: 1)
    assert runtime.torch_threads(processes=4, reserve=1) == 1
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.torch_threads(processes=4) == 3
    monkeypatch.setenv(runtime.THREADS_ENV, "0")
    with pytest.raises(ValueError, match=runtime.THREADS_ENV):
        runtime.torch_threads()


def test_available_cpus_respects_affinity():
    assert 1 <= runtime.available_cpus() <= len(os.sched_getaffinity(0))


def test_prepare_process_sets_threads_and_cache_and_keeps_the_users_choice(tmp_path, monkeypatch):
    for name in (*runtime.TORCH_THREAD_VARS, "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.setenv(name, "x")  # then deleted: restored after the test either way
        monkeypatch.delenv(name)
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    done = runtime.prepare_process(threads=2, compile_cache=tmp_path / "cache")
    assert done.threads == 2 and os.environ["MKL_NUM_THREADS"] == "5"
    assert done.compile_cache == (tmp_path / "cache").resolve() and done.compile_cache.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(done.compile_cache)
    assert done.allocator is sys.platform.startswith("linux")


def test_cli_train_prepares_its_process(tmp_path):
    config = {"algorithm": "maml", "iterations": 2, "meta_batch": 2, "hidden": [8], "eval_tasks": 2}
    (tmp_path / "run.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "workers.metalearn", "train", "--config", tmp_path / "run.json"]
        + ["--out", tmp_path / "out", "--threads", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**env, "METAWEB_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "process: 1 torch thread(s), allocator tuned" in done.stderr
    assert (tmp_path / "data" / "compile-cache").is_dir()
    assert "compile: auto stays eager: 2 iterations left" in done.stderr
