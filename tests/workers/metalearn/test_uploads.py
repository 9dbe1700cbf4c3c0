"""The one upload reader (``workers.metalearn.uploads``): its rules, and hostile
inputs refused from the zip directory, the image headers or the streaming CSV,
before anything is decoded, with peak memory under a stated bound."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from workers.metalearn.families import inspect_table
from workers.metalearn.types import DataError
from workers.metalearn.uploads import DEFAULT_LIMITS, UploadLimits, read_points

#: Every hostile input below is refused with less than this much Python-heap peak
#: (measured: under 10 MB; the old readers peaked at 1.6 to 2.3 GB on the same files).
PEAK_BOUND = 50 * 1024 * 1024


def peak_bytes(call: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """Run ``call``; return what it raised and the tracemalloc peak meanwhile."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except Exception as exc:  # noqa: BLE001 - returned to the test
        raised = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image's pixels are decoded."""

    def refuse(self: Any) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def png(size: tuple[int, int] = (8, 8), value: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def many_big_pngs(path: Path, count: int = 6000) -> Path:
    """The issue's zip: ``count`` blank 256x256 PNGs, about 1 MB packed."""
    one = png((256, 256))
    return write_zip(path, {f"c{i % 10}/{i}.png": one for i in range(count)})


# -- limits ------------------------------------------------------------------------------------


def test_tightened_limits_only_ever_lower_a_cap():
    assert DEFAULT_LIMITS.tightened(max_file_bytes=2_000_000_000, max_rows=None) == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.tightened(max_file_bytes=10).max_file_bytes == 10
    with pytest.raises(TypeError):
        DEFAULT_LIMITS.tightened(max_bytes=10)


def test_a_users_max_bytes_cannot_raise_the_sites_unpacked_cap(tmp_path):
    files = {f"c{k}/{i}.png": png(value=k) for k in range(3) for i in range(2)}
    path = write_zip(tmp_path / "a.zip", files)
    small = UploadLimits(max_unpacked_bytes=100)
    with pytest.raises(DataError) as exc:
        inspect_table(path, {"max_bytes": 2_000_000_000}, limits=small)
    assert exc.value.field == "a.zip" and exc.value.message.endswith("the limit is 0.0 MB")
    assert inspect_table(path, {"max_bytes": 2_000_000_000})["rows"] == 6


# -- the target rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "x", "y"),
    [
        ("x1,x2,y\n1,2,3\n4,5,6\n", [[1, 2], [4, 5]], [3, 6]),  # a header, y last
        ("Y,x1,x2\n3,1,2\n6,4,5\n", [[1, 2], [4, 5]], [3, 6]),  # y named anywhere, any case
        ("a,target,b\n1,3,2\n4,6,5\n", [[1, 2], [4, 5]], [3, 6]),  # or target / label
        ("a,b,c\n1,2,3\n4,5,6\n", [[1, 2], [4, 5]], [3, 6]),  # a header without one: the last
        ("1,2,3\n4;5;6\n", [[1, 2], [4, 5]], [3, 6]),  # no header; each row's delimiter
        ("# note\n1 2   3\n\n4\t5\t6\n", [[1, 2], [4, 5]], [3, 6]),  # comments, blanks, spaces
    ],
)
def test_the_target_is_the_column_named_y_else_the_last(text, x, y):
    points = read_points(text, input_size=2, classification=False)
    assert points.x.tolist() == x and points.y.tolist() == y


def test_class_names_and_a_set_without_targets():
    points = read_points("1,2,cat\n3,4,10\n", input_size=2, classification=True)
    assert points.labels == ["cat", "10"] and points.rows == [1, 2]
    unlabelled = read_points("x1,x2\n1,2\n", input_size=2, classification=True, need_target=False)
    assert unlabelled.labels is None and unlabelled.x.tolist() == [[1, 2]]
    with pytest.raises(DataError) as exc:
        read_points("x1,x2\n1,2\n", input_size=2, classification=True)
    assert (exc.value.field, exc.value.message) == (
        "row 1",
        "has 2 values; expected 3 (2 inputs, then the target)",
    )


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("x,y\n1,2\n1,nan\n", "row 3, column 'y'", "NaN values are not allowed"),
        ("x,y\n1,2\n\n1,2,3\n", "row 4", "has 3 values; expected 2 (1 input, then the target)"),
        ("x,y\n1,\n", "row 2, column 'y'", "the value is missing"),
        ('x,y\n1,"2\n', "row 2", "is not valid CSV (unexpected end of data)"),
        ("x,y\n", "data", "holds no examples; give at least 1, one per row"),
    ],
)
def test_errors_name_the_row_and_column(text, field, message):
    with pytest.raises(DataError) as exc:
        read_points(text, input_size=1, classification=False)
    assert (exc.value.field, exc.value.message) == (field, message)


# -- hostile CSV files --------------------------------------------------------------------------


def test_a_csv_with_one_2000_character_cell_is_refused_at_that_cell(tmp_path):
    """The issue's 1.4 MB file: 1.6 GB before; now refused at the cell, streaming."""
    lines = ["task,x1,x2,target"] + [f"t{i % 7},{i % 13}.25,{i % 11}.5,{i % 3}" for i in range(100_000)]
    lines.append("t1," + "9" * 2000 + ",1,0")
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 1_400_000
    raised, peak = peak_bytes(lambda: inspect_table(path, {"kind": "classification"}))
    assert isinstance(raised, DataError)
    assert raised.field == "row 100002, column 'x1'"
    assert raised.message == "the cell has 2,000 characters; the limit is 100"
    assert peak < PEAK_BOUND


def test_too_many_rows_columns_or_characters_per_line(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("task,x,target\n" + "t0,1,a\n" * 101)
    with pytest.raises(DataError) as exc:
        inspect_table(rows, {"kind": "classification"}, limits=UploadLimits(max_rows=100))
    assert (exc.value.field, exc.value.message) == ("rows.csv", "has over 100 rows, the limit")
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["task", "target", *(f"x{i}" for i in range(2000))]) + "\n")
    raised, peak = peak_bytes(lambda: inspect_table(wide, {"kind": "classification"}))
    assert isinstance(raised, DataError) and raised.field == "row 1"
    assert raised.message == "has 2,002 columns; the limit is 2,000"
    long_line = tmp_path / "long.csv"
    long_line.write_text("task,x,target\nt0," + "1" * 10_000_000 + ",a\n")
    raised, peak = peak_bytes(lambda: inspect_table(long_line, {"kind": "classification"}))
    assert isinstance(raised, DataError)
    assert (raised.field, raised.message) == ("row 2", "is longer than 206,000 characters")
    assert peak < PEAK_BOUND


# -- hostile archives ----------------------------------------------------------------------------


def test_many_small_pngs_of_a_big_declared_size_are_refused_from_one_header(tmp_path, no_decoding):
    """The issue's 1 MB zip of 6,000 256x256 PNGs: 2.3 GB before (about 45 GB at the
    20 MB cap); now refused from the first image's header: 6,000 x 256 x 256 pixels."""
    path = many_big_pngs(tmp_path / "many.zip")
    assert path.stat().st_size < 1_100_000
    raised, peak = peak_bytes(lambda: inspect_table(path, {"kind": "classification"}))
    assert isinstance(raised, DataError) and raised.field == "many.zip"
    assert raised.message == (
        "holds 6,000 images of 256x256 pixels, 393,216,000 pixels in all; the limit is 33,554,432"
    )
    assert peak < PEAK_BOUND


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path, no_decoding):
    files = {f"c{k}/{i}.png": png(value=k) for k in range(3) for i in range(2)}
    path = write_zip(tmp_path / "bomb.zip", {**files, "c0/pad.png": bytes(2_000_000)})
    raised, peak = peak_bytes(lambda: inspect_table(path))
    assert isinstance(raised, DataError) and raised.field == "bomb.zip"
    assert raised.message.startswith("is compressed ") and raised.message.endswith("times; the limit is 100")
    assert peak < PEAK_BOUND
    big = write_zip(tmp_path / "big.zip", {**files, "c0/big.png": bytes(3_000_000)})
    with pytest.raises(DataError) as exc:
        inspect_table(big)
    assert (exc.value.field, exc.value.message) == ("c0/big.png", "unpacks to 3.0 MB; the limit is 2.1 MB")


def test_entry_caps_are_read_from_the_directory(tmp_path, no_decoding):
    files = {f"c{k}/{i}.png": png() for k in range(3) for i in range(4)}
    path = write_zip(tmp_path / "twelve.zip", files)
    with pytest.raises(DataError) as exc:
        inspect_table(path, limits=UploadLimits(max_entries=11))
    assert (exc.value.field, exc.value.message) == ("twelve.zip", "holds 12 images; the limit is 11")
    hidden = write_zip(tmp_path / "hidden.zip", {**files, **{f".junk/{i}": b"" for i in range(1100)}})
    with pytest.raises(DataError) as exc:
        inspect_table(hidden, limits=UploadLimits(max_entries=12))
    assert exc.value.message == "holds 1,112 entries; the limit is 12 images"


def test_folders_have_the_same_caps(tmp_path, no_decoding):
    folder = tmp_path / "imgs"
    for k in range(3):
        (folder / f"c{k}").mkdir(parents=True)
        for i in range(3):
            (folder / f"c{k}" / f"{i}.png").write_bytes(png((64, 64)))
    with pytest.raises(DataError) as exc:
        inspect_table(folder, limits=UploadLimits(max_total_pixels=8 * 64 * 64))
    assert exc.value.message == "holds 9 images of 64x64 pixels, 36,864 pixels in all; the limit is 32,768"


def test_the_no_decoding_guard_catches_a_decode(tmp_path, no_decoding):
    """The guard above is real: checking a valid zip does decode its images."""
    files = {f"c{k}/{i}.png": png(value=k) for k in range(3) for i in range(2)}
    with pytest.raises(AssertionError, match="pixels were decoded"):
        inspect_table(write_zip(tmp_path / "ok.zip", files))
