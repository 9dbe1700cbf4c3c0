"""The ``table`` family: CSV and image-folder tasks, and every bad-data error naming its place."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import family_kind, inspect_table, make_family
from workers.metalearn.types import DataError, EpisodeSpec, TaskFamily

REGRESSION = {"kind": "regression", "task_column": "task", "target_column": "y"}
CLASSIFICATION = {"kind": "classification", "task_column": "task", "target_column": "label"}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def regression_csv(path: Path, tasks: int = 6, rows: int = 20) -> Path:
    """Task ``t<k>``: y = k * x1 - x2, with x1, x2 on a grid (exactly representable)."""
    lines = ["task,x1,x2,y"]
    for k in range(tasks):
        for r in range(rows):
            x1, x2 = r / 4, (r % 5) / 2
            lines.append(f"t{k},{x1},{x2},{k * x1 - x2}")
    return write(path / "data.csv", "\n".join(lines) + "\n")


def classification_csv(path: Path, tasks: int = 5, per_class: int = 8) -> Path:
    """Task ``t<k>`` has labels a, b, c; the label's index is the feature ``f0``'s integer part."""
    lines = ["task,f0,f1,label"]
    for k in range(tasks):
        for c, label in enumerate("abc"):
            for r in range(per_class):
                lines.append(f"t{k},{c + r / 10},{k},{label}")
    return write(path / "labels.csv", "\n".join(lines) + "\n")


def load_error(tmp_path: Path, text: str, params: dict = REGRESSION, name: str = "data.csv") -> DataError:
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as exc:
        make_family(FamilySpec(name="table", params=params), data_path=path)
    return exc.value


# -- CSV regression ----------------------------------------------------------------------------


def test_csv_regression_tasks_come_from_the_rows(tmp_path: Path) -> None:
    family = make_family(FamilySpec(name="table", params=REGRESSION), data_path=regression_csv(tmp_path))
    assert isinstance(family, TaskFamily) and family.kind == "regression" and family.input_shape == (2,)
    episode = EpisodeSpec(shots=4, query=6)
    batch = family.sample("train", 5, episode, seed=0)
    assert batch.x_support.shape == (5, 4, 2) and batch.y_support.shape == (5, 4, 1)
    assert batch.x_query.shape == (5, 6, 2) and batch.y_query.dtype == np.float32 and batch.desc is None
    for i, task_id in enumerate(batch.task_ids):
        k = int(family.task_name("train", task_id)[1:])
        x = np.concatenate([batch.x_support[i], batch.x_query[i]])
        y = np.concatenate([batch.y_support[i], batch.y_query[i]])[:, 0]
        np.testing.assert_array_equal(y, k * x[:, 0] - x[:, 1])
        assert len({tuple(row) for row in x}) == 10  # rows drawn without replacement


def test_csv_tasks_split_disjointly_and_deterministically(tmp_path: Path) -> None:
    path = regression_csv(tmp_path, tasks=10)
    family = make_family(FamilySpec(name="table", params=REGRESSION), data_path=path)
    names = family.data.names
    assert sorted(names["train"] + names["val"] + names["test"]) == sorted(f"t{k}" for k in range(10))
    assert [len(names[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    # The split depends on the task ids, not on the order of the rows.
    header, *rows = path.read_text().splitlines()
    shuffled = write(tmp_path / "shuffled.csv", "\n".join([header, *reversed(rows)]))
    again = make_family(FamilySpec(name="table", params=REGRESSION), data_path=shuffled)
    assert again.data.names == names
    # Fixed tasks cycle through the split's tasks and do not depend on count.
    episode = EpisodeSpec(shots=2, query=3)
    whole = family.fixed_tasks("test", episode, count=12)
    part = family.fixed_tasks("test", episode, count=4, start=6)
    np.testing.assert_array_equal(part.x_query, whole.x_query[6:10])
    assert [family.task_name("test", i) for i in range(4)] == [*names["test"], *names["test"]]


def test_spec_data_is_used_and_data_path_overrides_it(tmp_path: Path) -> None:
    path = regression_csv(tmp_path)
    by_spec = make_family(FamilySpec(name="table", params=REGRESSION, data=str(path)))
    by_arg = make_family(FamilySpec(name="table", params=REGRESSION, data="/nonexistent.csv"), data_path=path)
    np.testing.assert_array_equal(
        by_spec.fixed_tasks("val", EpisodeSpec(2, 2), 3).x_support,
        by_arg.fixed_tasks("val", EpisodeSpec(2, 2), 3).x_support,
    )
    with pytest.raises(ConfigError) as exc:
        make_family(FamilySpec(name="table", params=REGRESSION))
    assert "family.data" in exc.value.errors


def test_inspect_table_summarises_a_csv(tmp_path: Path) -> None:
    summary = inspect_table(regression_csv(tmp_path, tasks=5, rows=7), REGRESSION)
    assert summary["format"] == "csv" and summary["kind"] == "regression"
    assert summary["tasks"] == 5 and summary["rows"] == 35 and summary["classes"] == 0
    assert summary["columns"] == ["task", "x1", "x2", "y"] and summary["feature_columns"] == ["x1", "x2"]
    assert sum(s["tasks"] for s in summary["splits"].values()) == 5
    assert summary["episode_room"] == {"ways": None, "examples": 7}  # shots + query up to 7 rows
    json.dumps(summary)


def test_feature_columns_select_inputs(tmp_path: Path) -> None:
    params = {**REGRESSION, "feature_columns": ["x2"]}
    family = make_family(FamilySpec(name="table", params=params), data_path=regression_csv(tmp_path))
    assert family.input_shape == (1,)
    assert family.sample("train", 2, EpisodeSpec(2, 2), 0).x_support.shape == (2, 2, 1)


# -- CSV classification ------------------------------------------------------------------------


def test_csv_classification_episodes_use_one_tasks_labels(tmp_path: Path) -> None:
    family = make_family(
        FamilySpec(name="table", params=CLASSIFICATION), data_path=classification_csv(tmp_path)
    )
    assert family.kind == "classification" == family_kind("table", CLASSIFICATION)
    assert family.num_classes("train") == 3
    episode = EpisodeSpec(shots=2, query=3, ways=3)
    batch = family.sample("train", 6, episode, seed=4)
    assert batch.x_support.shape == (6, 6, 2) and batch.y_support.dtype == np.int64
    for i, task_id in enumerate(batch.task_ids):
        task = float(family.task_name("train", task_id)[1:])
        assert (batch.x_support[i, :, 1] == task).all() and (batch.x_query[i, :, 1] == task).all()
        # Episode label c is one CSV label throughout: f0's integer part.
        true_support = np.floor(batch.x_support[i, :, 0]).reshape(3, 2)
        assert (true_support == true_support[:, :1]).all() and len(set(true_support[:, 0])) == 3
        np.testing.assert_array_equal(
            np.floor(batch.x_query[i, :, 0]).reshape(3, 3)[:, 0], true_support[:, 0]
        )
    summary = inspect_table(classification_csv(tmp_path), CLASSIFICATION)
    assert summary["classes"] == 3 and summary["classes_per_task"] == {"min": 3, "max": 3}
    assert summary["episode_room"] == {"ways": 3, "examples": 8}


def test_csv_classification_episode_errors_name_task_and_class(tmp_path: Path) -> None:
    text = "task,f,label\n" + "".join(f"t{k},{r},{lab}\n" for k in range(3) for lab in "ab" for r in range(6))
    text += "t1,0,c\nt1,1,c\n"  # t1's class c has 2 rows
    family = make_family(
        FamilySpec(name="table", params=CLASSIFICATION), data_path=write(tmp_path / "c.csv", text)
    )
    split = next(s for s in ("train", "val", "test") if "t1" in family.data.names[s])
    with pytest.raises(DataError) as exc:
        family.check_episode(EpisodeSpec(shots=2, query=2, ways=2), split)
    assert exc.value.field == "shots"
    assert exc.value.message == "task 't1', class 'c' has 2 rows; 2 shots + 2 query need 4 per class"
    other = next(s for s in ("train", "val", "test") if "t0" in family.data.names[s])
    with pytest.raises(DataError) as exc:
        family.check_episode(EpisodeSpec(shots=1, query=1, ways=3), other)
    assert exc.value.field == "ways" and exc.value.message == "3-way episodes need 3 classes; task 't0' has 2"
    summary = inspect_table(tmp_path / "c.csv", CLASSIFICATION)
    assert summary["episode_room"] == {"ways": 2, "examples": 2}  # t0 has 2 classes, t1's c 2 rows


# -- CSV errors --------------------------------------------------------------------------------


def test_missing_column_is_named(tmp_path: Path) -> None:
    err = load_error(tmp_path, "task,x1,target\nt0,1,2\n")
    assert err.field == "column 'y'" and err.message == "no such column; the file has 'task', 'x1', 'target'"
    err = load_error(tmp_path, "task,x1,y\nt0,1,2\n", {**REGRESSION, "feature_columns": ["x1", "x9"]})
    assert err.field == "column 'x9'"


def test_non_numeric_value_names_row_and_column(tmp_path: Path) -> None:
    err = load_error(tmp_path, "task,x1,x2,y\nt0,1,2,3\nt0,1,2,3\nt1,4,abc,6\n")
    assert err.field == "row 4, column 'x2'" and err.message == "'abc' is not a number"


def test_nan_and_missing_values_name_row_and_column(tmp_path: Path) -> None:
    err = load_error(tmp_path, "task,x1,x2,y\nt0,1,2,3\nt0,NaN,2,3\n")
    assert err.field == "row 3, column 'x1'" and err.message == "NaN values are not allowed"
    err = load_error(tmp_path, "task,x1,x2,y\nt0,1,2,3\nt0,1,2,inf\n")
    assert err.field == "row 3, column 'y'" and err.message == "infinite values are not allowed"
    err = load_error(tmp_path, "task,x1,x2,y\nt0,1,,3\n")
    assert err.field == "row 2, column 'x2'" and err.message == "the value is missing"
    err = load_error(tmp_path, "task,x1,x2,y\n,1,2,3\n")
    assert err.field == "row 2, column 'task'"


def test_row_numbers_count_blank_lines_and_bad_widths(tmp_path: Path) -> None:
    err = load_error(tmp_path, "task,x1,x2,y\nt0,1,2,3\n\nt0,1,2,x\n")
    assert err.field == "row 4, column 'y'"
    err = load_error(tmp_path, "task,x1,x2,y\nt0,1,2,3\nt0,1,2\n")
    assert err.field == "row 3" and err.message == "has 3 values; the header has 4 columns"


def test_empty_oversized_and_undecodable_files(tmp_path: Path) -> None:
    err = load_error(tmp_path, "")
    assert err.field == "data.csv" and err.message == "the file is empty"
    err = load_error(tmp_path, "task,x1,y\n")
    assert err.field == "data.csv" and err.message == "the file has a header but no rows"
    err = load_error(tmp_path, "task,x1,y\n" + "t0,1,2\n" * 100, {**REGRESSION, "max_bytes": 100})
    assert err.field == "data.csv" and err.message == "the file is 0.0 MB; the limit is 0.0 MB"
    (tmp_path / "latin.csv").write_bytes("task,x1,y\nt\xe9,1,2\n".encode("latin-1"))
    with pytest.raises(DataError) as exc:
        inspect_table(tmp_path / "latin.csv", REGRESSION)
    assert exc.value.field == "latin.csv" and "not UTF-8" in exc.value.message
    with pytest.raises(DataError) as exc:
        inspect_table(tmp_path / "absent.csv", REGRESSION)
    assert exc.value.field == "absent.csv"


def test_too_few_tasks_or_rows(tmp_path: Path) -> None:
    err = load_error(tmp_path, "task,x1,y\nt0,1,2\nt1,1,2\n")
    assert err.field == "column 'task'" and err.message == "needs at least 3 tasks (one per split); found 2"
    family = make_family(
        FamilySpec(name="table", params=REGRESSION), data_path=regression_csv(tmp_path, rows=5)
    )
    with pytest.raises(DataError) as exc:
        family.sample("val", 2, EpisodeSpec(shots=5, query=1), seed=0)
    assert exc.value.field == "shots"
    assert exc.value.message == f"task '{family.data.names['val'][0]}' has 5 rows; 5 shots + 1 query need 6"


def test_bad_table_params_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        inspect_table(regression_csv(tmp_path), {**REGRESSION, "val_fraction": 0.5, "test_fraction": 0.5})
    assert exc.value.errors == {
        "family.params.test_fraction": "val_fraction + test_fraction must leave some data for train"
    }
    with pytest.raises(ConfigError) as exc:
        inspect_table(regression_csv(tmp_path), {**REGRESSION, "kind": "ranking"})
    assert list(exc.value.errors) == ["family.params.kind"]


# -- images ------------------------------------------------------------------------------------


def png(value: int, size: tuple[int, int] = (8, 6), mode: str = "L") -> bytes:
    """A ``size`` (width, height) image whose top-left pixel is ``value``."""
    image = Image.new(mode, size)
    image.putpixel((0, 0), value if mode == "L" else (value, value, value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_files(classes: int = 5, per_class: int = 4) -> dict[str, bytes]:
    """Class ``k``'s images have top-left pixel value ``10 * k + i``."""
    return {f"c{k}/img{i}.png": png(10 * k + i) for k in range(classes) for i in range(per_class)}


def image_folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def image_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return path


def images_error(tmp_path: Path, files: dict[str, bytes], params: dict | None = None) -> DataError:
    with pytest.raises(DataError) as exc:
        inspect_table(image_zip(tmp_path / "bad.zip", files), params or {})
    return exc.value


def test_image_folder_episodes_and_disjoint_classes(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "imgs", {**image_files(), ".DS_Store": b"x", "c0/.hidden.png": b""})
    family = make_family(FamilySpec(name="table"), data_path=folder)
    assert family.kind == "classification" and family.input_shape == (1, 6, 8)
    classes = family.data.class_names
    assert {s: len(classes[s][0]) for s in classes} == {"train": 3, "val": 1, "test": 1}
    assert sorted(classes["train"][0] + classes["val"][0] + classes["test"][0]) == [f"c{k}" for k in range(5)]
    batch = family.sample("train", 4, EpisodeSpec(shots=1, query=2, ways=3), seed=0)
    assert batch.x_support.shape == (4, 3, 1, 6, 8) and batch.x_support.dtype == np.float32
    first_pixel = np.rint(batch.x_query[:, :, 0, 0, 0] * 255).astype(int) // 10
    train_ids = {int(c[1:]) for c in classes["train"][0]}
    assert set(first_pixel.ravel()) <= train_ids
    support_class = np.rint(batch.x_support[:, :, 0, 0, 0] * 255).astype(int) // 10
    np.testing.assert_array_equal(first_pixel, np.repeat(support_class, 2, axis=1))
    assert batch.x_support.max() <= 1.0


def test_zip_equals_folder_even_wrapped_in_a_top_folder(tmp_path: Path) -> None:
    files = image_files()
    folder = make_family(FamilySpec(name="table"), data_path=image_folder(tmp_path / "imgs", files))
    zipped = make_family(FamilySpec(name="table"), data_path=image_zip(tmp_path / "a.zip", files, "upload/"))
    episode = EpisodeSpec(shots=2, query=2, ways=3)
    np.testing.assert_array_equal(
        folder.sample("train", 3, episode, 1).x_query, zipped.sample("train", 3, episode, 1).x_query
    )
    summary = inspect_table(tmp_path / "a.zip")
    assert summary["format"] == "images" and summary["classes"] == 5 and summary["rows"] == 20
    assert summary["input_shape"] == [1, 6, 8]
    assert summary["episode_room"] == {"ways": 1, "examples": 4}  # val and test get a class each


def test_color_images_become_grayscale(tmp_path: Path) -> None:
    files = {f"c{k}/{i}.png": png(200, mode="RGB") for k in range(3) for i in range(2)}
    family = make_family(FamilySpec(name="table"), data_path=image_zip(tmp_path / "rgb.zip", files))
    assert family.input_shape == (1, 6, 8)
    assert family.data.x[:, 0, 0, 0] == pytest.approx(200 / 255)


def test_mismatched_image_sizes_name_the_file(tmp_path: Path) -> None:
    err = images_error(tmp_path, {**image_files(), "c3/wide.png": png(1, size=(9, 6))})
    assert err.field == "c3/wide.png"
    assert err.message == "is 9x6 pixels but c0/img0.png is 8x6; all images must share one size"


def test_class_with_too_few_images_is_named(tmp_path: Path) -> None:
    files = image_files(classes=6, per_class=5)
    full = make_family(FamilySpec(name="table"), data_path=image_zip(tmp_path / "full.zip", files))
    small = full.data.class_names["train"][0][1]  # classes split by name only, so it stays in train
    for i in range(2, 5):
        del files[f"{small}/img{i}.png"]
    family = make_family(FamilySpec(name="table"), data_path=image_zip(tmp_path / "few.zip", files))
    family.check_episode(EpisodeSpec(shots=1, query=1, ways=4), "train")
    with pytest.raises(DataError) as exc:
        family.fixed_tasks("train", EpisodeSpec(shots=1, query=2, ways=2), count=2)
    assert exc.value.field == "shots"
    assert exc.value.message == f"class '{small}' has 2 images; 1 shots + 2 query need 3 per class"
    with pytest.raises(DataError) as exc:
        family.check_episode(EpisodeSpec(shots=1, query=1, ways=3), "test")
    assert (
        exc.value.field == "ways"
        and exc.value.message == "3-way episodes need 3 classes; the test split has 1"
    )


def test_bad_image_files_are_named(tmp_path: Path) -> None:
    err = images_error(tmp_path, {**image_files(), "c1/empty.png": b""})
    assert err.field == "c1/empty.png" and err.message == "the file is empty"
    err = images_error(tmp_path, {**image_files(), "c1/broken.png": b"not a png at all"})
    assert err.field == "c1/broken.png" and err.message == "is not a readable image"
    err = images_error(tmp_path, {**image_files(), "c1/notes.txt": b"hello"})
    assert err.field == "c1/notes.txt" and err.message.startswith("is not an image")
    err = images_error(tmp_path, {**image_files(), "loose.png": png(3)})
    assert err.field == "loose.png" and "class/image.png" in err.message
    err = images_error(tmp_path, {**image_files(), "c1/huge.png": png(3, size=(300, 300))})
    assert err.field == "c1/huge.png" and err.message == "is 300x300 pixels; the limit is 65536 (256x256)"
    err = images_error(tmp_path, {**image_files(), "../evil/x.png": png(3)})
    assert err.field == "../evil/x.png"


def test_bad_archives(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(b"PK but not really a zip")
    with pytest.raises(DataError) as exc:
        inspect_table(tmp_path / "junk.zip")
    assert exc.value.field == "junk.zip" and exc.value.message == "is not a valid zip file"
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(DataError) as exc:
        inspect_table(tmp_path / "empty.zip")
    assert exc.value.message == "the file is empty"
    # Highly compressible content: small on disk, over the limit once unpacked.
    bomb = image_zip(tmp_path / "bomb.zip", {**image_files(), "c0/pad.png": bytes(200_000)})
    with pytest.raises(DataError) as exc:
        inspect_table(bomb, {"max_bytes": 100_000})
    assert exc.value.field == "bomb.zip" and exc.value.message.startswith("unpacks to 0.2 MB")
    err = images_error(tmp_path, image_files(classes=2))
    assert err.field == "bad.zip" and err.message == "needs at least 3 classes (one per split); found 2"
    err = images_error(tmp_path, image_files(), {"kind": "regression"})
    assert err.field == "kind"
