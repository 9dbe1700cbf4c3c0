"""How a chunk of points is packed into bytes, and its envelope. Pure numpy.

A chunk's ``steps`` are int32 and its ``values`` float64, little-endian, in
ascending step order: 12 bytes a point. Its ``envelope`` is a subsequence of the
chunk's points: in each block of ``ENVELOPE_BLOCK`` (64) consecutive points, the point
with the lowest and the point with the highest finite value (one when they
coincide), packed as records of an int32 step and a float64 value. A chart of
a wide range reads envelopes instead of points: a 100x spike is the highest point
of its block, so it is in the envelope, and min-max downsampling keeps it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

STEP_DTYPE = np.dtype("<i4")
VALUE_DTYPE = np.dtype("<f8")
#: An envelope point: its step and value side by side (12 bytes, unaligned), so the
#: envelopes of consecutive chunks join as bytes and decode in one call.
RECORD_DTYPE = np.dtype([("step", "<i4"), ("value", "<f8")])
#: Points per chunk. Every chunk of a series holds exactly this many but the last,
#: which new points fill before a new chunk starts.
CHUNK_POINTS = 4096
#: Points per envelope block: the envelope keeps at most 2 of every 64 points.
ENVELOPE_BLOCK = 64
#: Steps are stored as int32: 0 .. 2**31 - 1.
MAX_STEP = 2**31 - 1

Steps = NDArray[np.int64]
Values = NDArray[np.float64]


def steps_pack(steps: Steps) -> bytes:
    return np.asarray(steps, dtype=STEP_DTYPE).tobytes()


def values_pack(values: Values) -> bytes:
    return np.asarray(values, dtype=VALUE_DTYPE).tobytes()


def steps_unpack(blob: bytes | memoryview) -> Steps:
    return np.frombuffer(blob, dtype=STEP_DTYPE).astype(np.int64)


def values_unpack(blob: bytes | memoryview) -> Values:
    return np.frombuffer(blob, dtype=VALUE_DTYPE)


def envelope_pack(steps: Steps, values: Values, *, block: int = ENVELOPE_BLOCK) -> bytes:
    """The envelope of one chunk's points (ascending steps), packed as records."""
    n = int(steps.size)
    if n == 0:
        return b""
    blocks = -(-n // block)
    padded_low = np.full(blocks * block, np.inf)
    padded_high = np.full(blocks * block, -np.inf)
    finite = np.isfinite(values)
    padded_low[:n] = np.where(finite, values, np.inf)
    padded_high[:n] = np.where(finite, values, -np.inf)
    base = np.arange(blocks) * block
    low = base + padded_low.reshape(blocks, block).argmin(axis=1)
    high = base + padded_high.reshape(blocks, block).argmax(axis=1)
    keep = np.unique(np.minimum(np.concatenate([low, high]), n - 1))
    records = np.empty(keep.size, dtype=RECORD_DTYPE)
    records["step"] = steps[keep]
    records["value"] = values[keep]
    return records.tobytes()


def envelope_unpack(blob: bytes | memoryview) -> tuple[Steps, Values]:
    """Envelope records (of one chunk, or of consecutive chunks joined) as arrays."""
    records = np.frombuffer(blob, dtype=RECORD_DTYPE)
    return records["step"].astype(np.int64), records["value"].astype(np.float64)


def batch_group(points: list[tuple[str, int, float]]) -> dict[str, tuple[Steps, Values]]:
    """``[(name, step, value), ...]`` -> ``{name: (steps, values)}``, each ascending by
    step with one value per step (the first given). Raises ValueError for a step
    outside ``0 .. MAX_STEP``."""
    by_name: dict[str, tuple[list[int], list[float]]] = {}
    for name, step, value in points:
        steps, values = by_name.setdefault(name, ([], []))
        steps.append(int(step))
        values.append(float(value))
    grouped = {}
    for name, (step_list, value_list) in by_name.items():
        steps = np.asarray(step_list, dtype=np.int64)
        if steps.size and (steps.min() < 0 or steps.max() > MAX_STEP):
            raise ValueError(f"{name}: a step must be between 0 and {MAX_STEP}.")
        values = np.asarray(value_list, dtype=np.float64)
        unique, first = np.unique(steps, return_index=True)  # sorted; first occurrence of each
        grouped[name] = (unique, values[first])
    return grouped


def chunks_split(steps: Steps, values: Values, *, size: int = CHUNK_POINTS) -> list[dict[str, object]]:
    """Consecutive points (ascending steps) as the fields of chunks of ``size``."""
    return [chunk_fields(steps[i : i + size], values[i : i + size]) for i in range(0, int(steps.size), size)]


def chunk_fields(steps: Steps, values: Values) -> dict[str, object]:
    """The stored fields of one chunk of points (ascending steps, at least one)."""
    return {
        "first_step": int(steps[0]),
        "last_step": int(steps[-1]),
        "count": int(steps.size),
        "steps": steps_pack(steps),
        "values": values_pack(values),
        "envelope": envelope_pack(steps, values),
    }
