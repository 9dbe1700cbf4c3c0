"""The web process's memory while it serves a big download: a meta-model's 400 MB
weights file, from ``manage.py serve --no-worker`` (daphne, as ``make run`` and the
real stack serve it) on a fresh PostgreSQL database.

A member's session downloads the file twice, reading at 200 MB/s and at 8 MB/s (a
slow client), each from a freshly started web process. For each: the process's
peak resident memory during the download (``VmHWM`` after writing 5 to
``/proc/PID/clear_refs``) above its memory before, and that growth as a ratio of
the file's size. The baseline, measured in the same run: the growth of a fresh
process serving an ordinary page (the model's page).

Before ``metaweb/streaming.py`` Django read the file whole into a list under ASGI:
+1,203 MB for this file at either speed (ratio 3.0). After: +592 MB and +756 MB
(ratio 1.9). What remains is daphne's send buffer: it has no backpressure.

    .venv/bin/python benchmarks/download_memory.py [--megabytes 400]

Last line: ``RESULT fast_growth_mb=<x> slow_growth_mb=<y> slow_growth_ratio=<y/size>
baseline_growth_mb=<z>``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._stack import bench_member, bench_stack, session_cookie, setup_django  # noqa: E402
from benchmarks.hostile_inputs import peak_mb, reset_peak, start_web  # noqa: E402

MIB = 1024 * 1024


def make_model(megabytes: int):
    """A meta-model whose stored weights are ``megabytes`` of bytes, and its member."""
    from apps.registry import storage
    from tests.factories import MetaModelFactory

    team, user = bench_member("bench", username="bench")
    model = MetaModelFactory(experiment__team=team, experiment__created_by=user)
    path = storage.meta_model_dir(model.pk) / storage.WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytes(range(256)) * (MIB // 256)
    with path.open("wb") as handle:
        for _ in range(megabytes):
            handle.write(block)
    return model, user


def download(base: str, path: str, cookie: tuple[str, str], *, rate: float) -> tuple[int, str]:
    """Read the answer at about ``rate`` bytes a second; its size and sha256."""
    import requests

    digest, size, start = hashlib.sha256(), 0, time.perf_counter()
    with requests.get(base + path, cookies=dict([cookie]), stream=True, timeout=600) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_content(MIB):
            digest.update(chunk)
            size += len(chunk)
            ahead = size / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    return size, digest.hexdigest()


def growth(pid: int, action) -> float:
    """MB the process's peak resident memory rose above its memory before ``action``."""
    reset_peak(pid)
    before = peak_mb(pid)
    action()
    return peak_mb(pid) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=400)
    args = parser.parse_args()
    with bench_stack("downloads") as stack:
        setup_django(stack.env, migrate=True)
        model, user = make_model(args.megabytes)
        cookie = session_cookie(user)
        weights, page = f"/models/{model.pk}/params.safetensors", f"/models/{model.pk}/"
        results = {}
        for name, rate in (("baseline", 0.0), ("fast", 200 * MIB), ("slow", 8 * MIB)):
            web, base = start_web(stack)  # a fresh process each: freed memory is not given back
            got: list[tuple[int, str]] = []

            def fetch(rate: float = rate, got: list = got, base: str = base) -> None:
                got.append(download(base, weights if rate else page, cookie, rate=rate or 1e12))

            results[name] = growth(web.popen.pid, fetch)
            assert web.alive(), web.tail()
            web.stop()
            if rate:
                assert got[0][0] == args.megabytes * MIB, got
                print(f"{name}: {rate / MIB:.0f} MB/s, peak +{results[name]:.0f} MB, sha256 {got[0][1][:12]}")
        baseline = results["baseline"]
        print(f"baseline (the model's page): +{baseline:.1f} MB; file {args.megabytes} MB")
        ratio = results["slow"] / args.megabytes
        print(
            f"RESULT fast_growth_mb={results['fast']:.0f} slow_growth_mb={results['slow']:.0f} "
            f"slow_growth_ratio={ratio:.2f} baseline_growth_mb={baseline:.1f}"
        )
        stack.ok = True


if __name__ == "__main__":
    main()
