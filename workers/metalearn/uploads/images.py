"""Image sets: a zip or a folder laid out ``class/image.png`` (one folder around
the classes is allowed), or loose files named ``class_anything.png``.

Three passes, each bounded before the next begins:

1. **The directory.** A zip's entry count is read from its end record before the
   directory is parsed; then entries (hidden files and ``__MACOSX`` skipped),
   each entry's and the total unpacked size, and the compression ratio are
   checked from the directory, with the layout and the file suffixes.
2. **The headers.** Each image's width and height come from its header (PIL's
   ``Image.open`` reads no pixels); one size for all, under ``max_image_pixels``,
   and the sum of width x height under ``max_total_pixels``.
3. **The pixels**, one image at a time (:meth:`ImageSet.decode`).

Every problem is a :class:`DataError` naming the file or entry at fault.
"""

from __future__ import annotations

import contextlib
import functools
import io
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from workers.metalearn.types import DataError
from workers.metalearn.uploads.limits import DEFAULT_LIMITS, UploadLimits, check_file_size, format_mb

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
_IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_END_RECORD = b"PK\x05\x06"


@dataclass(frozen=True)
class ImageFile:
    """One image: its class, its name for messages, its unpacked size and a way to open it."""

    cls: str
    name: str
    size: int
    open: Callable[[], IO[bytes]]


@dataclass(frozen=True)
class ImageSet:
    """Checked images, sorted by (class, name), all ``height x width``."""

    files: list[ImageFile]
    height: int
    width: int

    def decode(self, image: ImageFile) -> np.ndarray:
        """``image`` as grey levels, uint8 ``[height, width]``."""
        from PIL import Image, UnidentifiedImageError

        try:
            with image.open() as fh, Image.open(fh) as opened:
                return np.asarray(opened.convert("L"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise DataError(image.name, "is not a readable image") from None


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") or part in _IGNORED_NAMES for part in parts)


def _entry_count(fh: IO[bytes]) -> int:
    """The entry count in a zip's end record (the last ``PK\\x05\\x06`` in its tail),
    or 0 when there is none (then ``zipfile`` reports the bad file)."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - 65_557))
    tail = fh.read()
    at = tail.rfind(_END_RECORD)
    if at < 0 or len(tail) < at + 12:
        return 0
    return struct.unpack("<H", tail[at + 10 : at + 12])[0]


def _by_class(found: list[tuple[tuple[str, ...], int, Callable[[], IO[bytes]]]]) -> list[ImageFile]:
    """Class folders from paths, allowing one folder around them."""
    strip = len({parts[0] for parts, _, _ in found}) == 1 and all(len(parts) == 3 for parts, _, _ in found)
    files = []
    for parts, size, opener in found:
        name = "/".join(parts)
        inner = parts[1:] if strip else parts
        if len(inner) != 2:
            raise DataError(
                name, "images must sit directly in a folder named after their class: class/image.png"
            )
        if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(name, f"is not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.append(ImageFile(cls=inner[0], name=name, size=size, open=opener))
    return sorted(files, key=lambda f: (f.cls, f.name))


def _zip_directory(archive: zipfile.ZipFile, name: str, limits: UploadLimits) -> list[ImageFile]:
    found = []
    unpacked = packed = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        # Names are only labels here: never joined to a path on disk.
        parts = tuple(
            p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("", "/", ".")
        )
        if ".." in parts or info.filename.startswith("/"):
            raise DataError(info.filename, "entries must stay inside the zip (no '..', no leading '/')")
        if not parts or _hidden(parts):
            continue
        if info.file_size > limits.max_entry_bytes:
            raise DataError(
                info.filename,
                f"unpacks to {format_mb(info.file_size)}; the limit is {format_mb(limits.max_entry_bytes)}",
            )
        unpacked, packed = unpacked + info.file_size, packed + info.compress_size
        found.append((parts, info.file_size, _zip_opener(archive, info)))
    cap = limits.max_unpacked_bytes
    if unpacked > cap:
        raise DataError(name, f"unpacks to {format_mb(unpacked)}; the limit is {format_mb(cap)}")
    if unpacked > limits.max_compression_ratio * max(packed, 1):
        ratio = unpacked / max(packed, 1)
        raise DataError(
            name,
            f"is compressed {ratio:,.0f} times; the limit is {limits.max_compression_ratio:,.0f}",
        )
    if len(found) > limits.max_entries:
        raise DataError(name, f"holds {len(found):,} images; the limit is {limits.max_entries:,}")
    return _by_class(found) if found else []


def _zip_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        try:
            return archive.open(info)
        except (RuntimeError, zipfile.BadZipFile, NotImplementedError, OSError) as exc:
            raise DataError(info.filename, f"cannot be read from the zip ({exc})") from None

    return opener


@contextlib.contextmanager
def open_zip(
    source: Path | IO[bytes], *, name: str, limits: UploadLimits = DEFAULT_LIMITS
) -> Iterator[list[ImageFile]]:
    """The images of a zip, checked from its directory; readable inside the block."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, Path):
            if not source.is_file():
                raise DataError(name, "no such file or folder")
            check_file_size(name, source.stat().st_size, limits)
            fh: IO[bytes] = stack.enter_context(source.open("rb"))
        else:
            fh = source
        entries = _entry_count(fh)
        if entries > limits.max_entries * 2 + 1000:
            raise DataError(name, f"holds {entries:,} entries; the limit is {limits.max_entries:,} images")
        try:
            archive = stack.enter_context(zipfile.ZipFile(fh))
        except (zipfile.BadZipFile, OSError, ValueError):
            raise DataError(name, "is not a valid zip file") from None
        yield _zip_directory(archive, name, limits)


def folder_images(path: Path, *, limits: UploadLimits = DEFAULT_LIMITS) -> list[ImageFile]:
    """The images of a folder (symbolic links are skipped), checked as a zip's are."""
    found = []
    total = 0
    for file in sorted(path.rglob("*")):
        parts = file.relative_to(path).parts
        if file.is_symlink() or not file.is_file() or _hidden(parts):
            continue
        size = file.stat().st_size
        if size > limits.max_entry_bytes:
            raise DataError(
                "/".join(parts), f"is {format_mb(size)}; the limit is {format_mb(limits.max_entry_bytes)}"
            )
        total += size
        if total > limits.max_unpacked_bytes:
            raise DataError(
                path.name, f"the folder holds over {format_mb(limits.max_unpacked_bytes)}, the limit"
            )
        found.append((parts, size, functools.partial(file.open, "rb")))
        if len(found) > limits.max_entries:
            raise DataError(path.name, f"holds over {limits.max_entries:,} images, the limit")
    return _by_class(found) if found else []


def named_images(
    files: list[tuple[str, int, Callable[[], IO[bytes]]]], *, limits: UploadLimits = DEFAULT_LIMITS
) -> list[ImageFile]:
    """Loose images named ``class_anything.png``: ``(name, size, opener)`` each."""
    if len(files) > limits.max_entries:
        raise DataError("images", f"give at most {limits.max_entries:,} images")
    images = []
    for raw_name, size, opener in files:
        path = PurePosixPath(PurePosixPath(raw_name or "image").name)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(path.name, f"is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a zip")
        if "_" not in path.stem or not path.stem.split("_", 1)[0]:
            raise DataError(path.name, "name each image after its class, as class_anything.png")
        if size > limits.max_entry_bytes:
            raise DataError(
                path.name, f"is {format_mb(size)}; the limit is {format_mb(limits.max_entry_bytes)}"
            )
        images.append(ImageFile(cls=path.stem.split("_", 1)[0], name=path.name, size=size, open=opener))
    return sorted(images, key=lambda f: (f.cls, f.name))


def _header_size(image: ImageFile) -> tuple[int, int]:
    """``(width, height)`` from the image's header; no pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    if image.size == 0:
        raise DataError(image.name, "the file is empty")
    try:
        with image.open() as fh, Image.open(fh) as opened:
            return opened.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise DataError(image.name, "is not a readable image") from None


def _check_total(count: int, width: int, height: int, where: str, limits: UploadLimits) -> None:
    """All images share the first one's size, so the pixels to decode are known
    from one header: ``count x width x height``."""
    if count * width * height > limits.max_total_pixels:
        raise DataError(
            where,
            f"holds {count:,} images of {width}x{height} pixels, {count * width * height:,} pixels in all; "
            f"the limit is {limits.max_total_pixels:,}",
        )


def check_images(files: list[ImageFile], *, where: str, limits: UploadLimits = DEFAULT_LIMITS) -> ImageSet:
    """Sizes from the headers: each under ``max_image_pixels``, all one size, and
    their total under ``max_total_pixels``. ``where`` names the set in errors."""
    if not files:
        raise DataError(where, "holds no images; lay them out as class/image.png")
    first: tuple[str, int, int] | None = None
    for image in files:
        width, height = _header_size(image)
        if width * height > limits.max_image_pixels:
            side = int(limits.max_image_pixels**0.5)
            raise DataError(
                image.name,
                f"is {width}x{height} pixels; the limit is {limits.max_image_pixels} ({side}x{side})",
            )
        if first is None:
            first = (image.name, width, height)
            _check_total(len(files), width, height, where, limits)
        elif (width, height) != first[1:]:
            raise DataError(
                image.name,
                f"is {width}x{height} pixels but {first[0]} is {first[1]}x{first[2]}; "
                "all images must share one size",
            )
    assert first is not None
    return ImageSet(files=files, height=first[2], width=first[1])
