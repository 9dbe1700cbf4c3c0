"""The embedded worker of ``make run`` leaves the server room beside the training thread."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workers import embedded
from workers.metalearn.runtime import TORCH_THREAD_VARS


@pytest.fixture
def restore(monkeypatch, tmp_path):
    previous = sys.getswitchinterval()
    for name in TORCH_THREAD_VARS:  # set, then deleted: restored after the test either way
        monkeypatch.setenv(name, "1")
        monkeypatch.delenv(name)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "compile-cache"))
    yield
    sys.setswitchinterval(previous)


def test_share_with_server_leaves_a_core_and_switches_threads_quickly(restore):
    embedded.share_with_server(cpus=4)
    assert sys.getswitchinterval() == pytest.approx(embedded.SWITCH_INTERVAL_SECONDS)
    import os

    assert [os.environ[name] for name in TORCH_THREAD_VARS] == ["3", "3"]


def test_share_with_server_keeps_a_thread_count_set_by_the_user(restore, monkeypatch):
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    embedded.share_with_server(cpus=1)
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["MKL_NUM_THREADS"] == "1"


def test_torch_imported_afterwards_uses_the_thread_count():
    """What the first task sees: torch reads the variable at import."""
    code = (
        "import django; django.setup(); "
        "from workers import embedded; embedded.share_with_server(cpus=3); "
        "import torch; print(torch.get_num_threads())"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in TORCH_THREAD_VARS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "2"
