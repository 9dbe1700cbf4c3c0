"""The torch-free checkpoint layout: names, the newest-checkpoint lookup, the record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.metalearn import checkpoint_layout as layout

ROOT = Path(__file__).resolve().parents[3]


def _write(root: Path, step: int, *, record: bool = True, weights: bool = True) -> Path:
    folder = root / layout.step_dir_name(step)
    folder.mkdir(parents=True)
    if weights:
        (folder / layout.PARAMS_FILE).write_bytes(b"w")
    if record:
        (folder / layout.META_FILE).write_text(layout.record_text({"format": layout.FORMAT, "step": step}))
    return folder


def test_newest_complete_checkpoint_without_a_pointer(tmp_path):
    assert layout.latest_checkpoint(tmp_path / "missing") is None
    _write(tmp_path, 4)
    newest = _write(tmp_path, 12)
    _write(tmp_path, 3)
    assert layout.step_dir_name(12) == "step-000012"
    assert layout.latest_checkpoint(tmp_path) == newest
    assert [s for s, _ in layout.list_checkpoints(tmp_path)] == [3, 4, 12]
    assert layout.latest_weights(tmp_path) == (newest / layout.PARAMS_FILE).resolve()


def test_half_written_folders_are_ignored(tmp_path):
    good = _write(tmp_path, 1)
    _write(tmp_path, 2, record=False)  # the record comes last
    _write(tmp_path, 3, weights=False)
    (tmp_path / f"{layout.TMP_PREFIX}step-000004-x").mkdir()  # a crash mid-write
    (tmp_path / layout.LATEST).write_text("step-000002\n")  # names the unfinished one
    assert layout.latest_checkpoint(tmp_path) == good
    assert [s for s, _ in layout.list_checkpoints(tmp_path)] == [1]


def test_the_pointer_wins_when_it_names_a_complete_folder_inside(tmp_path):
    older = _write(tmp_path / "run", 5)
    _write(tmp_path / "run", 6)
    (tmp_path / "run" / layout.LATEST).write_text("step-000005\n")
    assert layout.latest_checkpoint(tmp_path / "run") == older
    outside = _write(tmp_path / "elsewhere", 9)
    os.symlink(outside, tmp_path / "run" / "step-000009")
    for pointer in ("step-000009", "../elsewhere/step-000009", "step-000007", "\xff"):
        (tmp_path / "run" / layout.LATEST).write_text(pointer)
        assert layout.latest_checkpoint(tmp_path / "run").name == "step-000006", pointer


def test_record_round_trip_and_refusals(tmp_path):
    folder = _write(tmp_path, 1)
    assert layout.read_record(folder) == {"format": layout.FORMAT, "step": 1}
    (folder / layout.META_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        layout.read_record(folder)
    with pytest.raises(OSError):
        layout.read_record(tmp_path / "nowhere")


def test_layout_and_specs_import_without_torch():
    code = (
        "import sys\n"
        "import workers.metalearn.checkpoint_layout, workers.metalearn.specs, workers.metalearn.shapes\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _with_val_loss(root: Path, step: int, val_loss) -> Path:
    folder = root / layout.step_dir_name(step)
    folder.mkdir(parents=True)
    (folder / layout.PARAMS_FILE).write_bytes(b"w" * 10)
    record = {
        "format": layout.FORMAT,
        "step": step,
        "metrics": {} if val_loss is None else {"val_loss": val_loss},
    }
    (folder / layout.META_FILE).write_text(layout.record_text(record))
    return folder


def test_best_is_the_lowest_recorded_val_loss(tmp_path):
    assert layout.best_checkpoint(tmp_path) is None
    _with_val_loss(tmp_path, 1, None)
    assert layout.best_checkpoint(tmp_path) is None  # no record holds the metric
    _with_val_loss(tmp_path, 2, 0.5)
    best = _with_val_loss(tmp_path, 3, 0.25)
    _with_val_loss(tmp_path, 4, float("nan"))
    _with_val_loss(tmp_path, 5, 0.3)
    assert layout.best_checkpoint(tmp_path) == best
    tie = _with_val_loss(tmp_path, 6, 0.25)
    assert layout.best_checkpoint(tmp_path) == tie  # the later of two equals


def test_superseded_names_all_but_the_latest_and_the_best(tmp_path):
    for step, val_loss in [(10, 0.9), (20, 0.1), (30, 0.4), (40, 0.5)]:
        _with_val_loss(tmp_path, step, val_loss)
    (tmp_path / layout.LATEST).write_text("step-000040\n")
    (tmp_path / f"{layout.TMP_PREFIX}step-000050-x").mkdir()
    (tmp_path / f"{layout.OLD_PREFIX}step-000030-y").mkdir()
    (tmp_path / "step-000045").mkdir()  # incomplete
    (tmp_path / "notes").mkdir()  # not the layout's: left alone
    names = sorted(p.name for p in layout.superseded(tmp_path))
    assert names == [
        f"{layout.OLD_PREFIX}step-000030-y",
        f"{layout.TMP_PREFIX}step-000050-x",
        "step-000010",
        "step-000030",
        "step-000045",
    ]
    assert layout.superseded(tmp_path / "missing") == []


def test_superseded_never_names_the_latest_when_it_is_also_the_best(tmp_path):
    _with_val_loss(tmp_path, 1, 0.5)
    _with_val_loss(tmp_path, 2, 0.1)
    assert [p.name for p in layout.superseded(tmp_path)] == ["step-000001"]
