"""Reading uploaded data, once for the engine, the workers and the web.

Torch-free and Django-free (numpy, the standard library and, for images, PIL).
One CSV reader (:mod:`.csvrows`) under two layouts, task-set tables
(:mod:`.tables`) and sets of examples (:mod:`.points`); one image reader
(:mod:`.images`); one set of bounds (:mod:`.limits`). Errors are
:class:`~workers.metalearn.types.DataError` naming the field, row, column or file.
"""

from workers.metalearn.uploads.csvrows import CsvRows, parse_number
from workers.metalearn.uploads.images import (
    IMAGE_SUFFIXES,
    ImageFile,
    ImageSet,
    check_images,
    folder_images,
    named_images,
    open_zip,
)
from workers.metalearn.uploads.labels import check_class_count, class_order, label_indices
from workers.metalearn.uploads.limits import DEFAULT_LIMITS, UploadLimits, check_file_size, format_mb
from workers.metalearn.uploads.points import TARGET_NAMES, Points, read_points
from workers.metalearn.uploads.tables import TableColumns, read_table_csv

__all__ = [
    "DEFAULT_LIMITS",
    "IMAGE_SUFFIXES",
    "TARGET_NAMES",
    "CsvRows",
    "ImageFile",
    "ImageSet",
    "Points",
    "TableColumns",
    "UploadLimits",
    "check_class_count",
    "check_file_size",
    "check_images",
    "class_order",
    "folder_images",
    "format_mb",
    "label_indices",
    "named_images",
    "open_zip",
    "parse_number",
    "read_points",
    "read_table_csv",
]
