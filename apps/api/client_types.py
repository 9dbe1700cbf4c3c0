"""``metaweb/client/types.py``, written from the API's own OpenAPI schema.

The Python client imports no Django, so it cannot import the API's schemas; instead
its TypedDicts are generated from them (``python manage.py client_types``), and
``tests/api/test_client_types.py`` fails when the file and the schemas disagree. A
response schema ``FooOut`` becomes the client's ``Foo``; the schemas it refers to
come along (``BoxStats`` keeps its name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from apps.api.api import api
from apps.experiments.models import FINISHED_STATUSES, RunStatus

TARGET = Path(settings.BASE_DIR) / "metaweb" / "client" / "types.py"
#: Response schemas that are not resources: the client turns them into ``ApiError``.
_ERRORS = frozenset({"MessageOut", "ValidationErrorOut", "ErrorItem"})
_SCALARS = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "None"}
_HEADER = '''"""The API's resources as the client returns them: plain JSON, typed.

Generated from the API's OpenAPI schema by ``python manage.py client_types``
(``apps/api/client_types.py``): do not edit by hand.
"""

from __future__ import annotations

from typing import Any, TypedDict
'''


def client_name(component: str) -> str:
    return component.removesuffix("Out")


def _resources(components: dict[str, Any]) -> list[str]:
    """The response schemas and every schema they refer to, in the schema's order."""
    wanted = {name for name in components if name.endswith("Out") and name not in _ERRORS}
    pending = list(wanted)
    while pending:
        for ref in _refs(components[pending.pop()]):
            if ref not in wanted:
                wanted.add(ref)
                pending.append(ref)
    return [name for name in components if name in wanted]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def python_type(prop: dict[str, Any]) -> str:
    """The annotation of one JSON-schema property."""
    if "$ref" in prop:
        return client_name(prop["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in prop:
        return " | ".join(python_type(option) for option in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        return f"list[{python_type(prop.get('items', {}))}]"
    if kind is None:  # the schema says nothing: an untyped field
        return "Any"
    if kind == "object":
        return "dict[str, Any]"
    return _SCALARS[kind]


def render() -> str:
    """The text of ``metaweb/client/types.py``."""
    components = api.get_openapi_schema()["components"]["schemas"]
    parts = [_HEADER]
    for name in _resources(components):
        fields = components[name].get("properties", {})
        lines = [f"    {field}: {python_type(prop)}" for field, prop in fields.items()]
        parts.append(f"\nclass {client_name(name)}(TypedDict):\n" + "\n".join(lines) + "\n")
    finished = ", ".join(f'"{status.value}"' for status in RunStatus if status in FINISHED_STATUSES)
    parts.append(f"\n#: A run's statuses once it will not change again.\nFINISHED = ({finished})\n")
    return "\n".join(parts)
