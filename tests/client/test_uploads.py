"""The client and the command line over the multipart endpoints (task-set upload,
meta-model push, CSV adaptation) and the comparison, against the real app."""

from __future__ import annotations

import hashlib
import json

import pytest

from apps.adaptations.models import Adaptation
from apps.registry.models import MetaModel
from apps.tasksets.models import TaskSet
from metaweb.client import ApiError
from tests.api.test_model_upload import CONFIG, weights
from tests.client.conftest import one_line
from tests.reviews.test_comparison import evaluate, losses_for
from tests.tasksets.data import TABLE_PARAMS, good_csv


def test_taskset_upload(world, member_client, tmp_path):
    data = tmp_path / "tasks.csv"
    data.write_bytes(good_csv())
    created = member_client.taskset_upload("Table tasks", data, params=TABLE_PARAMS)
    assert created["family"] == "table" and TaskSet.objects.filter(pk=created["id"]).exists()
    with pytest.raises(ApiError) as duplicate:
        member_client.taskset_upload("Table tasks", data, params=TABLE_PARAMS)
    assert duplicate.value.status == 422 and duplicate.value.field == "name"
    with pytest.raises(ApiError) as missing:
        member_client.taskset_upload("Other", tmp_path / "nope.csv")
    assert missing.value.field == "data_file" and "Cannot read" in missing.value.message


def test_models_push_then_pull(logged_in, cli, tmp_path):
    pushed = tmp_path / "mine.safetensors"
    pushed.write_bytes(weights())
    config = tmp_path / "run.json"
    config.write_text(json.dumps(CONFIG))
    code, out, err = cli("models", "push", str(pushed), "--config", str(config), "--taskset", "Sines")
    assert code == 0, err
    model = MetaModel.objects.get(name="mine")
    assert out.strip() == f"Registered mine v1 (id {model.pk}, sha256 {model.weights_sha256})."
    assert model.weights_sha256 == hashlib.sha256(pushed.read_bytes()).hexdigest()
    code, _, err = cli("models", "pull", "mine:1", "-o", str(tmp_path / "back.safetensors"))
    assert code == 0 and (tmp_path / "back.safetensors").read_bytes() == pushed.read_bytes()
    pushed.write_bytes(b"not safetensors")
    code, _, err = cli("models", "push", str(pushed), "--config", str(config), "--taskset", "Sines")
    assert code == 1 and "HTTP 422: weights_file: " in one_line(err)


def test_adapt_from_csv_files(logged_in, cli, tmp_path, sent):
    support, query = tmp_path / "support.csv", tmp_path / "query.csv"
    support.write_text("x,y\n-1,0.5\n2,1.5\n")
    query.write_text("x,y\n0.5,0.25\n")
    code, out, err = cli(
        "adapt", "sine-maml@production", "--support", str(support), "--query", str(query), "--json"
    )
    assert code == 0, err
    adaptation = Adaptation.objects.get(run_id=json.loads(out)["run_id"])
    assert adaptation.support == {"x": [[-1.0], [2.0]], "y": [0.5, 1.5]} and adaptation.query["y"] == [0.25]
    assert [name for name, _, _ in sent] == ["workers.tasks.adapt_run"]
    support.write_text("x,y\n-1,abc\n")
    code, _, err = cli("adapt", "sine-maml", "--support", str(support))
    assert code == 1 and "support_file: " in one_line(err)
    code, _, err = cli("adapt", "sine-maml", "--query", str(query))
    assert code == 64 and "choose one of" in one_line(err)


def test_compare_two_evaluations(logged_in, cli):
    model = logged_in["meta_model"]
    runs = [evaluate(model, losses_for(seed)).adaptation.run_id for seed in (1, 2)]
    code, out, err = cli("models", "compare", "--adaptation", str(runs[0]), "--adaptation", str(runs[1]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("mse over ") and lines[1].split()[:2] == ["MODEL", "VERSION"]
    assert lines[2].split()[-1] == "reference" and len(lines) >= 4
    code, _, err = cli("models", "compare", "--adaptation", str(runs[0]))
    assert code == 1 and "HTTP 422" in one_line(err)
