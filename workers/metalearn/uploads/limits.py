"""The bounds every upload reader enforces, as one frozen dataclass.

The defaults are the site's caps. A caller may pass tighter ones (the web's
settings, the adaptation form's set sizes, a task set's ``max_bytes``) through
:meth:`UploadLimits.tightened`, which never raises a cap. Each bound is checked
before the work it guards: file sizes before reading, a zip's entry count,
unpacked size and compression ratio from its directory, image sizes from each
image's header before any pixel is decoded, and CSV cells, rows and columns
while the file streams in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from workers.metalearn.types import DataError

MIB = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """Caps on one uploaded file.

    * ``max_file_bytes``: the file as uploaded (CSV or zip), 20 MiB.
    * ``max_rows``, ``max_columns``, ``max_cell_chars``: a CSV's data rows (500,000),
      columns (2,000) and characters in one cell (100: numbers, task ids and class
      names are short). A physical line may hold at most
      ``max_columns * (max_cell_chars + 3)`` characters.
    * ``max_entries``: images in a zip or folder (10,000).
    * ``max_entry_bytes``: one image file, unpacked (2 MiB).
    * ``max_unpacked_bytes``: a zip's entries together, unpacked (64 MiB).
    * ``max_compression_ratio``: a zip's unpacked size over its packed size (100;
      PNGs barely compress, a zip bomb compresses about 1,000 times).
    * ``max_image_pixels``: one image's width x height (256 x 256).
    * ``max_total_pixels``: the sum of width x height over all images (2**25, about
      33.5 million: 134 MB as float32), read from the image headers.
    """

    max_file_bytes: int = 20 * MIB
    max_rows: int = 500_000
    max_columns: int = 2_000
    max_cell_chars: int = 100
    max_entries: int = 10_000
    max_entry_bytes: int = 2 * MIB
    max_unpacked_bytes: int = 64 * MIB
    max_compression_ratio: float = 100.0
    max_image_pixels: int = 256 * 256
    max_total_pixels: int = 2**25

    @property
    def max_line_chars(self) -> int:
        return self.max_columns * (self.max_cell_chars + 3)

    def tightened(self, **caps: int | float | None) -> UploadLimits:
        """These limits with each given cap lowered to ``caps[name]`` when that is
        smaller; a larger value (or None) leaves the cap as it is."""
        known = {f.name for f in dataclasses.fields(self)}
        lowered = {}
        for name, value in caps.items():
            if name not in known:
                raise TypeError(f"UploadLimits has no cap named {name!r}")
            if value is not None and value < getattr(self, name):
                lowered[name] = value
        return dataclasses.replace(self, **lowered)


#: The site's caps; readers use these unless given tighter ones.
DEFAULT_LIMITS = UploadLimits()


def format_mb(size: int) -> str:
    """``1_500_000`` -> ``"1.5 MB"`` (decimal megabytes, as the engine's messages say)."""
    return f"{size / 1e6:.1f} MB"


def check_file_size(name: str, size: int, limits: UploadLimits) -> None:
    """Refuse an empty file or one over ``max_file_bytes``, before reading it."""
    if size == 0:
        raise DataError(name, "the file is empty")
    if size > limits.max_file_bytes:
        raise DataError(
            name, f"the file is {format_mb(size)}; the limit is {format_mb(limits.max_file_bytes)}"
        )
