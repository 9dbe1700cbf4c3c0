"""Checking a safetensors file without torch and without trusting it.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of
JSON (``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{...}}``), then the tensor bytes. :func:`read_safetensors_header` checks every part
of that layout against the file's size, then lets the ``safetensors`` library open
it with its numpy backend as a second opinion. Nothing is ever unpickled: a pickle
or a zip (``torch.save``'s format) is recognised by its first bytes and refused.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

#: Bytes per element of each dtype the format knows.
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
#: The engine's parameters are float32.
ALLOWED_DTYPES = frozenset({"F32"})
#: The safetensors library refuses headers above 100 MB. An upload's is far smaller:
#: 1 MiB describes over 10,000 tensors, and the engine's models have under 100.
MAX_HEADER_BYTES = 1024 * 1024
METADATA_KEY = "__metadata__"
#: Deepest nesting of objects and lists a header may have. The format needs 3 (the
#: header, a tensor's entry, its shape or offsets); a JSON parser recurses once per
#: level, so a header nesting 200,000 deep must be refused before it is parsed.
MAX_HEADER_DEPTH = 8
#: A JSON string, whose brackets do not count (possessive: linear even unterminated).
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class WeightsError(ValueError):
    """The file is not a safetensors file the engine can use; the message says why."""


@dataclass(frozen=True)
class TensorHeader:
    dtype: str
    shape: list[int]
    begin: int
    end: int


def _sniff(head: bytes) -> str | None:
    """Name a well-known non-safetensors format from its first bytes."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive (torch.save's format)"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a Python pickle"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    return None


def read_safetensors_header(path: str | Path) -> dict[str, TensorHeader]:
    """The tensors a safetensors file holds, as ``{name: TensorHeader}``.

    Raises :class:`WeightsError` for anything else: a pickle, a zip, a truncated
    file, a header that is not JSON or nests deeper than ``MAX_HEADER_DEPTH`` (checked
    before parsing), offsets outside the file or overlapping, a dtype other than float32.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        kind = _sniff(head)
        if kind is not None:
            raise WeightsError(f"This is {kind}, not safetensors. Only safetensors files are accepted.")
        if len(head) < 8:
            raise WeightsError("The file is too short to be safetensors (it is truncated or empty).")
        (length,) = struct.unpack("<Q", head)
        if length < 2 or length > 2**32:
            raise WeightsError("This is not a safetensors file (its header length is implausible).")
        if length > MAX_HEADER_BYTES:
            raise WeightsError(
                f"Its safetensors header is {length:,} bytes; at most {MAX_HEADER_BYTES:,} are accepted."
            )
        if 8 + length > size:
            raise WeightsError("The file is truncated: it ends inside its safetensors header.")
        raw = fh.read(length)
    if not nests_within(raw, limit=MAX_HEADER_DEPTH):
        raise WeightsError(
            "This is not a safetensors file (its header nests deeper than "
            f"{MAX_HEADER_DEPTH} levels, or its brackets do not pair up)."
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError("This is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise WeightsError("This is not a safetensors file (its header is not a JSON object).")
    data_size = size - 8 - length
    tensors = _tensors(header, data_size)
    _check_with_library(path)
    return tensors


def nests_within(raw: bytes, *, limit: int) -> bool:
    """Whether JSON text ``raw`` pairs its brackets and nests at most ``limit`` deep
    (brackets inside strings not counted). No recursion and no Python loop per byte:
    strings are cut out, the brackets kept as ``(``/``)``, and innermost pairs removed
    ``limit`` times; anything left is deeper, or unpaired (not JSON either way)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_AS_PARENS, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return True
        brackets = brackets.replace(b"()", b"")
    return not brackets


def _tensors(header: dict, data_size: int) -> dict[str, TensorHeader]:
    tensors: dict[str, TensorHeader] = {}
    for name, entry in header.items():
        if name == METADATA_KEY:
            continue
        if not isinstance(entry, dict):
            raise WeightsError(f"Tensor {name!r}: its header entry is not an object.")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            raise WeightsError(f"Tensor {name!r}: unknown dtype {dtype!r}.")
        if dtype not in ALLOWED_DTYPES:
            raise WeightsError(f"Tensor {name!r} is {dtype}; the engine needs float32 (F32) tensors.")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise WeightsError(f"Tensor {name!r}: its shape is not a list of sizes.")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise WeightsError(f"Tensor {name!r}: its data offsets are invalid.")
        begin, end = offsets
        if end > data_size:
            raise WeightsError(f"The file is truncated: tensor {name!r} ends past the end of the file.")
        if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise WeightsError(f"Tensor {name!r}: its byte length does not match its shape.")
        tensors[name] = TensorHeader(dtype=dtype, shape=list(shape), begin=begin, end=end)
    # The tensors must tile the data buffer exactly: no gaps, no overlaps, no tail.
    position = 0
    for name, tensor in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if tensor.begin != position:
            raise WeightsError(f"Tensor {name!r}: its data overlaps another tensor or leaves a gap.")
        position = tensor.end
    if position != data_size:
        raise WeightsError("The file has bytes after its last tensor; it is not a clean safetensors file.")
    return tensors


def _check_with_library(path: Path) -> None:
    """Open the file with safetensors' numpy backend (no torch) as a second check."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                handle.get_slice(key).get_shape()
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"The safetensors library cannot read this file: {exc}") from None
