"""System metrics: the sampler's figures and cadence, and the reporter storing them as
``sys_*`` series at the step they were sampled."""

from __future__ import annotations

import pytest

from apps.experiments.services import run_claim
from tests.factories import RunFactory, metric_points
from tests.workers.test_reporting import FakeClock, _reporter
from workers.system_metrics import SystemSampler, process_rss_mb


@pytest.fixture
def claimed(db):
    run = RunFactory(total_steps=1000)
    return run, run_claim(run_id=run.pk, worker="test", device="cpu")


class Counter:
    """A CPU clock that advances by ``rate`` seconds per wall second of a FakeClock."""

    def __init__(self, clock: FakeClock, rate: float) -> None:
        self.clock, self.rate, self.start = clock, rate, clock.now

    def __call__(self) -> float:
        return (self.clock.now - self.start) * self.rate


def test_the_sampler_gives_memory_cpu_and_device_figures_once_per_interval():
    clock = FakeClock()
    sampler = SystemSampler(
        every=10.0, rss_mb=lambda: 512.0, cpu_seconds=Counter(clock, 1.5), device_memory_mb=lambda: 80.0
    )
    assert sampler.sample(clock.now) == {"sys_rss_mb": 512.0, "sys_device_peak_mb": 80.0}  # no CPU yet
    clock.now += 9.9
    assert sampler.sample(clock.now) is None
    clock.now += 0.1
    assert sampler.sample(clock.now) == pytest.approx(
        {"sys_rss_mb": 512.0, "sys_cpu_percent": 150.0, "sys_device_peak_mb": 80.0}
    )


def test_a_figure_that_cannot_be_read_is_left_out_and_never_raises():
    def broken() -> float:
        raise RuntimeError("no device")

    sampler = SystemSampler(rss_mb=lambda: None, device_memory_mb=broken)
    assert sampler.sample(0.0) == {}


def test_the_process_rss_is_read_from_proc():
    before = process_rss_mb()
    block = bytearray(64 * 2**20)  # touched: resident
    block[::4096] = b"\x01" * len(block[::4096])
    after = process_rss_mb()
    assert before is not None and after is not None and after - before >= 60
    del block


def test_the_reporter_stores_system_figures_at_the_step_they_were_sampled(claimed):
    run, claim = claimed
    clock = FakeClock()
    sampler = SystemSampler(every=10.0, rss_mb=lambda: 300.0, cpu_seconds=Counter(clock, 0.5))
    reporter = _reporter(run, claim, clock=clock, system=sampler)
    for step in range(1, 101):
        clock.now += 0.25  # 4 steps a second: a sample every 40 steps
        reporter.on_step(step, {"loss": 1.0})
    clock.now += 1.0
    reporter.on_step(1000, {"loss": 1.0})  # the last step is sampled too
    reporter.close()
    assert metric_points(run, "sys_rss_mb") == {1: 300.0, 41: 300.0, 81: 300.0, 1000: 300.0}
    assert metric_points(run, "sys_cpu_percent") == pytest.approx({41: 50.0, 81: 50.0, 1000: 50.0})
