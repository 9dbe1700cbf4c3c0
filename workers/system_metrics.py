"""System metrics of a training run, as Weights & Biases records them unasked: the
worker process's resident memory and CPU use, and the device's peak memory on a
GPU, sampled every ``SAMPLE_SECONDS`` while the run trains, and at its last step.

They are stored as ordinary metric series, named with :data:`SYSTEM_PREFIX`
(``sys_rss_mb``, ``sys_cpu_percent``, ``sys_device_peak_mb``), at the training step
they were sampled at: the run's summary, the compare page's charts, the run search
(``metric.sys_rss_mb>2000``), the API and the CSV read them like any curve. The
figures are the worker *process*'s: under ``make run`` the embedded worker shares
its process with the web server, so they include it.

Torch-free: the device figure comes from a reader the caller passes in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: Names of system metrics start with this (a search key: letters, digits, ``_``).
SYSTEM_PREFIX = "sys_"
#: Seconds between two samples.
SAMPLE_SECONDS = 10.0

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def process_rss_mb() -> float | None:
    """The process's resident memory now, in MiB (Linux ``/proc``); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


class SystemSampler:
    """``sample(now)`` gives the figures at most once per ``every`` seconds (None in
    between; ``force``: now anyway): memory now, CPU use since the previous sample in percent of one core
    (summed over the process's threads, so up to 100 x threads), device peak memory."""

    def __init__(
        self,
        *,
        device_memory_mb: Callable[[], float | None] | None = None,
        every: float = SAMPLE_SECONDS,
        rss_mb: Callable[[], float | None] = process_rss_mb,
        cpu_seconds: Callable[[], float] = time.process_time,
    ) -> None:
        self.every = every
        self._device_memory_mb = device_memory_mb
        self._rss_mb = rss_mb
        self._cpu_seconds = cpu_seconds
        self._last: tuple[float, float] | None = None  # (wall, cpu) of the previous sample

    def sample(self, now: float, *, force: bool = False) -> dict[str, float] | None:
        if self._last is not None and now - self._last[0] < self.every and not force:
            return None
        cpu = self._cpu_seconds()
        figures: dict[str, float | None] = {"rss_mb": self._rss_mb()}
        if self._last is not None and now > self._last[0]:
            figures["cpu_percent"] = 100.0 * (cpu - self._last[1]) / (now - self._last[0])
        if self._device_memory_mb is not None:
            try:
                figures["device_peak_mb"] = self._device_memory_mb()
            except Exception:  # noqa: BLE001 - a figure must never break training
                figures["device_peak_mb"] = None
        self._last = (now, cpu)
        return {SYSTEM_PREFIX + name: float(v) for name, v in figures.items() if v is not None}
