"""What the command line prints: aligned tables for people, JSON for machines,
a progress line while following a run."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from metaweb.client.live import Progress


def emit_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(value, indent=2, default=str) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def pairs(items: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    width = max(len(k) for k, _ in items)
    for key, value in items:
        out.write(f"{key.ljust(width)}  {_cell(value)}\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and "T" in value and value[:4].isdigit() and len(value) >= 19:
        return value[:19].replace("T", " ")  # an ISO time, to the second
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class ProgressLine:
    """``run 12 [######----] 60% step 600/1000 loss 0.0312 ETA 00:41 running``: redrawn
    in place on a terminal; elsewhere (CI logs) a line when the status changes or at
    most every ``every`` seconds."""

    WIDTH = 24

    def __init__(self, out: TextIO | None = None, *, every: float = 10.0) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.every = every
        self._last_at = -1e9
        self._last_status = ""

    def render(self, p: Progress) -> str:
        frac = min(1.0, p.step / p.total_steps) if p.total_steps else 0.0
        filled = int(frac * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        total = f"/{p.total_steps}" if p.total_steps else ""
        loss = f" loss {p.loss:.4g}" if p.loss is not None else ""
        eta = "" if p.finished else f" ETA {duration(p.eta_seconds)}"
        return f"run {p.run_id} [{bar}] {frac:4.0%} step {p.step}{total}{loss}{eta} {p.status}"

    def __call__(self, p: Progress) -> None:
        if p.warning:  # a line of its own, kept above the redrawn bar
            self.out.write(("\r\x1b[K" if self.tty else "") + f"run {p.run_id} warning: {p.warning}\n")
        line = self.render(p)
        if self.tty:
            self.out.write("\r\x1b[K" + line + ("\n" if p.finished else ""))
            self.out.flush()
            return
        now = time.monotonic()
        if p.status != self._last_status or p.finished or now - self._last_at >= self.every:
            self.out.write(line + "\n")
            self.out.flush()
            self._last_at, self._last_status = now, p.status
