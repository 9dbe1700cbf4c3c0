"""``compile: auto|on|off``: the rule, the cache markers, and the fallback to eager.

Nothing here compiles for real (a first compile takes about a minute on these CPUs);
``benchmarks/engine_throughput.py`` times real compiles, cold and from the cache, and
checks the compiled meta-gradient against the per-task reference.
"""

from __future__ import annotations

import pytest
import torch

import workers.metalearn.algorithms.base as base
from workers.metalearn.api import meta_train
from workers.metalearn.compiling import (
    AUTO_ITERATIONS_CACHED,
    AUTO_ITERATIONS_CACHED_CUDA,
    AUTO_ITERATIONS_FIRST,
    AUTO_ITERATIONS_FIRST_CUDA,
    decide,
    graph_key,
    is_cached,
    mark_cached,
    use_cache_dir,
)
from workers.metalearn.config import ConfigError, FamilySpec, parse_config
from workers.metalearn.families import make_family

SMALL = {
    "algorithm": "maml",
    "iterations": 4,
    "meta_batch": 3,
    "shots": 3,
    "query": 3,
    "hidden": [8],
    "eval_interval": 4,
    "eval_tasks": 4,
    "checkpoint_interval": 4,
    "seed": 1,
}


def test_config_default_is_auto_and_booleans_still_parse():
    assert parse_config({}).compile == "auto"
    assert parse_config({"compile": True}).compile == "on"
    assert parse_config({"compile": False}).compile == "off"
    assert parse_config({"compile": "false"}).compile == "off"
    with pytest.raises(ConfigError) as err:
        parse_config({"compile": "sometimes"})
    assert "compile" in err.value.errors


def test_auto_rule():
    assert decide("on", fused=False, remaining=1, cached=False).compile
    assert not decide("off", fused=True, remaining=10**6, cached=True).compile
    assert not decide("auto", fused=False, remaining=10**6, cached=True).compile
    assert decide("auto", fused=True, remaining=AUTO_ITERATIONS_CACHED, cached=True).compile
    assert not decide("auto", fused=True, remaining=AUTO_ITERATIONS_CACHED - 1, cached=True).compile
    assert not decide("auto", fused=True, remaining=AUTO_ITERATIONS_FIRST - 1, cached=False).compile
    assert decide("auto", fused=True, remaining=AUTO_ITERATIONS_FIRST, cached=False).compile
    assert "stays eager" in decide("auto", fused=True, remaining=10, cached=False).reason


def test_auto_rule_on_cuda_compiles_sooner():
    """A compiled step gains about three times more on a GPU (module docstring)."""
    assert AUTO_ITERATIONS_CACHED_CUDA < AUTO_ITERATIONS_CACHED
    assert AUTO_ITERATIONS_FIRST_CUDA < AUTO_ITERATIONS_FIRST
    for cached, need in ((True, AUTO_ITERATIONS_CACHED_CUDA), (False, AUTO_ITERATIONS_FIRST_CUDA)):
        assert decide("auto", fused=True, remaining=need, cached=cached, cuda=True).compile
        assert not decide("auto", fused=True, remaining=need - 1, cached=cached, cuda=True).compile
        assert not decide("auto", fused=True, remaining=need, cached=cached).compile
    assert not decide("auto", fused=False, remaining=10**6, cached=True, cuda=True).compile


def test_cache_dir_and_markers(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    folder = use_cache_dir(tmp_path / "cache")
    assert folder == (tmp_path / "cache").resolve() and folder.is_dir()
    facts = {"algorithm": "maml", "params": {"w": [40, 1]}}
    key = graph_key(facts)
    assert key == graph_key(dict(reversed(facts.items())))
    assert key != graph_key({**facts, "params": {"w": [40, 2]}})
    assert not is_cached(key)
    mark_cached(key, facts)
    assert is_cached(key)
    # The environment wins over the project's folder.
    assert use_cache_dir(tmp_path / "other") == folder


def _failing_compile(monkeypatch):
    calls = []

    def broken(fn, **kwargs):
        def run(*args, **kw):
            calls.append(1)
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(base.torch, "compile", broken)
    return calls


def test_auto_falls_back_to_eager_when_the_compile_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("workers.metalearn.compiling.AUTO_ITERATIONS_FIRST", 1)
    family = make_family(FamilySpec(name="sinusoid"))
    eager = meta_train({**SMALL, "compile": "off"}, family)
    calls = _failing_compile(monkeypatch)
    auto = meta_train({**SMALL, "compile": "auto"}, family)
    assert calls == [1]
    assert "compile failed" in auto.compile and "no C++ compiler" in auto.compile
    assert auto.metrics["loss"] == eager.metrics["loss"]
    assert not any(tmp_path.rglob("metaweb-graphs/*")), "a failed compile leaves no marker"


def test_on_fails_the_run_when_the_compile_fails(monkeypatch):
    _failing_compile(monkeypatch)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        meta_train({**SMALL, "compile": "on"}, make_family(FamilySpec(name="sinusoid")))


def test_short_auto_run_stays_eager(monkeypatch):
    calls = _failing_compile(monkeypatch)
    result = meta_train({**SMALL, "compile": "auto"}, make_family(FamilySpec(name="sinusoid")))
    assert calls == [] and "stays eager" in result.compile
    assert torch.isfinite(torch.tensor(result.metrics["loss"]))
