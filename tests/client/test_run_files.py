"""A run's files from scripts: ``track``'s ``log_file``, the client's methods and
``metaweb runs files|upload|download``, against the real app on the live server."""

from __future__ import annotations

import hashlib

import pytest

from apps.experiments.models import RunFile
from metaweb.client.errors import ApiError
from tests.client.conftest import one_line


def test_a_tracked_run_keeps_a_file_that_comes_back_the_same(world, member_client, tmp_path):
    plot = tmp_path / "loss.png"
    plot.write_bytes(b"\x89PNG\r\n" + bytes(range(256)) * 100)
    with member_client.track(experiment="with files") as run:
        run.log({"loss": 0.5}, step=1)
        kept = run.log_file(plot)
        renamed = run.log_file(plot, name="loss-again.png")
    assert (kept["name"], kept["size"]) == ("loss.png", plot.stat().st_size)
    assert kept["sha256"] == hashlib.sha256(plot.read_bytes()).hexdigest() == renamed["sha256"]
    listed = member_client.run_files(run.id)
    assert [f["name"] for f in listed] == ["loss-again.png", "loss.png"]
    target = tmp_path / "back.png"
    assert member_client.run_file_download(run.id, kept["id"], target) == kept["sha256"]
    assert target.read_bytes() == plot.read_bytes()
    with pytest.raises(ApiError) as refused:
        member_client.run_file_upload(run.id, plot)  # the name is taken
    assert refused.value.field == "name" and "already keeps a file called 'loss.png'" in refused.value.message
    with pytest.raises(ApiError) as missing:
        member_client.run_file_upload(run.id, tmp_path / "nope.png")
    assert missing.value.field == "file" and "Cannot read" in missing.value.message


def test_the_command_line_uploads_lists_and_downloads(logged_in, cli, tmp_path, monkeypatch):
    run = logged_in["run"]
    table = tmp_path / "results.csv"
    table.write_text("seed,loss\n0,0.1\n1,0.2\n")
    code, out, err = cli("runs", "upload", str(run.pk), str(table), "--name", "seeds.csv")
    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    assert code == 0 and out.strip() == f"Run {run.pk} keeps seeds.csv (22 bytes, sha256 {digest}).", err
    code, out, _ = cli("runs", "files", str(run.pk))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "NAME", "SIZE", "SHA256", "CREATED_BY", "CREATED_AT"]
    assert lines[1].split()[1:4] == ["seeds.csv", "22", digest]
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("runs", "download", str(run.pk), "seeds.csv")
    assert code == 0 and (tmp_path / "seeds.csv").read_text() == table.read_text()
    kept = RunFile.objects.get(run=run)
    code, out, _ = cli("runs", "download", str(run.pk), str(kept.pk), "-o", str(tmp_path / "by-id.csv"))
    assert code == 0 and (tmp_path / "by-id.csv").read_text() == table.read_text()
    code, _, err = cli("runs", "download", str(run.pk), "nothing.csv")
    assert code == 1 and one_line(err).endswith(
        f"Run {run.pk} keeps no file called 'nothing.csv' (see: metaweb runs files {run.pk})."
    )
    code, _, err = cli("runs", "upload", str(run.pk), str(table), "--name", "a/b.csv")
    assert code == 1 and "name: A file name is a name, not a path" in one_line(err)
