"""Celery workers prepare their process for training before the pool forks."""

from __future__ import annotations

from celery.signals import worker_init

import metaweb.celery  # noqa: F401 - connects the handler, as the worker's -A metaweb does


class FakeWorker:
    concurrency = 2


def test_worker_init_prepares_allocator_threads_and_compile_cache(monkeypatch, settings, tmp_path):
    calls = []
    monkeypatch.setattr("workers.metalearn.runtime.prepare_process", lambda **kw: calls.append(kw))
    monkeypatch.setattr("workers.metalearn.runtime.available_cpus", lambda: 4)
    monkeypatch.delenv("METAWEB_TORCH_THREADS", raising=False)
    settings.DATA_DIR = tmp_path
    worker_init.send(sender=FakeWorker())
    assert calls == [{"threads": 2, "compile_cache": tmp_path / "compile-cache"}]
