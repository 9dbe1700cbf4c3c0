"""The client's TypedDicts are the API's schemas (``apps/api/client_types.py``)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.api import client_types
from apps.api.client_types import python_type, render


def test_the_client_types_file_is_what_the_schemas_generate():
    assert client_types.TARGET.read_text() == render(), "run: python manage.py client_types"


def test_the_check_refuses_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "types.py"
    stale.write_text(render().replace("    seed: int\n", ""))
    monkeypatch.setattr("apps.api.management.commands.client_types.TARGET", stale)
    with pytest.raises(CommandError, match="out of date"):
        call_command("client_types", "--check")
    call_command("client_types")  # rewrites it
    assert stale.read_text() == render()
    call_command("client_types", "--check")


def test_every_response_schema_and_what_it_refers_to_is_a_type():
    namespace: dict = {}
    exec(compile(render(), "types.py", "exec"), namespace)  # the generated module imports and runs
    for name in ("Run", "RunPage", "MetaModel", "Adaptation", "Adapted", "Comparison", "BoxStats"):
        assert name in namespace
    assert "MessageOut" not in namespace and "Message" not in namespace  # errors become ApiError
    assert set(namespace["Run"].__annotations__) >= {"id", "status", "config", "finished_at"}
    assert namespace["FINISHED"] == ("succeeded", "failed", "cancelled")


@pytest.mark.parametrize(
    ("prop", "annotation"),
    [
        ({"type": "integer"}, "int"),
        ({"anyOf": [{"type": "number"}, {"type": "null"}]}, "float | None"),
        ({"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "null"}]}}, "list[float | None]"),
        ({"type": "object", "additionalProperties": True}, "dict[str, Any]"),
        ({"$ref": "#/components/schemas/SeriesOut"}, "Series"),
        ({"type": "string", "format": "date-time"}, "str"),
        ({"title": "Untyped"}, "Any"),
    ],
)
def test_json_schema_properties_become_annotations(prop, annotation):
    assert python_type(prop) == annotation
