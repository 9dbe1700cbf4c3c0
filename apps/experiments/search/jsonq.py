"""Typed comparisons on a key path of a JSON column, the same on PostgreSQL and SQLite.

A bare key comparison is not: PostgreSQL orders jsonb values of different types
(a string sorts below every number, ``true`` above), SQLite compares what
``JSON_EXTRACT`` returns by its own rules, and a missing key gives NULL, which a
``NOT`` would turn into "no match". So every comparison here is guarded by the
type of the value at the path (:class:`JSONTypeIs`, never NULL), and the key
path is built from :class:`KeyTransform` expressions, never from a lookup string,
so that a key named ``contains`` or ``isnull`` stays a key.
"""

from __future__ import annotations

from typing import Any, Literal

from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, F, FloatField, Func, JSONField, Q, TextField, Value
from django.db.models.fields.json import KeyTransform, compile_json_path
from django.db.models.sql.compiler import SQLCompiler

JsonKind = Literal["number", "string", "boolean"]

#: What each backend's type function answers for each kind (fixed strings, passed as parameters).
_POSTGRES_TYPES: dict[JsonKind, tuple[str, ...]] = {
    "number": ("number",),
    "string": ("string",),
    "boolean": ("boolean",),
}
_SQLITE_TYPES: dict[JsonKind, tuple[str, ...]] = {
    "number": ("integer", "real"),
    "string": ("text",),
    "boolean": ("true", "false"),
}
#: The comparison operators of the search language and the lookups they use.
LOOKUPS: dict[str, str] = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


class JSONTypeIs(Func):
    """True when the JSON value at ``key`` is of ``kind``; False when it is of
    another type or missing (never NULL)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, key: KeyTransform, kind: JsonKind) -> None:
        super().__init__(key)
        self.kind = kind

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        raise NotSupportedError(f"Searching JSON values needs PostgreSQL or SQLite, not {connection.vendor}.")

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        types = _POSTGRES_TYPES[self.kind]
        marks = ", ".join(["%s"] * len(types))
        return f"COALESCE(jsonb_typeof({sql}) IN ({marks}), false)", (*params, *types)

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        key = self.source_expressions[0]
        column, params, keys = key.preprocess_lhs(compiler, connection)
        types = _SQLITE_TYPES[self.kind]
        marks = ", ".join(["%s"] * len(types))
        sql = f"COALESCE(JSON_TYPE({column}, %s) IN ({marks}), 0)"
        return sql, (*params, compile_json_path(keys), *types)


def key_path(column: str, keys: tuple[str, ...]) -> KeyTransform:
    """``column -> keys[0] -> keys[1] ...`` as an expression (``keys`` not empty)."""
    expression: Any = F(column)
    for key in keys:
        expression = KeyTransform(key, expression)
    return expression


def json_compare(*, column: str, keys: tuple[str, ...], op: str, value: Any, kind: JsonKind) -> Q:
    """Rows whose JSON ``column`` holds a value of ``kind`` at ``keys`` that compares
    to ``value`` by ``op`` (``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``). Never NULL,
    so ``~`` of the result is its complement."""
    key = key_path(column, keys)
    typed = Q(JSONTypeIs(key, kind))
    rhs = Value(value, output_field=JSONField())  # adapted as JSON, as the column is
    if op == "!=":
        return typed & ~Q(key.get_lookup("exact")(key, rhs))
    return typed & Q(key.get_lookup(LOOKUPS[op])(key, rhs))


class JSONScalar(Func):
    """The JSON value at ``key`` as an SQL number (``kind="number"``, a float) or
    text (``kind="string"``), NULL when it is missing or of another type. For
    sorting: numbers then compare as numbers on both backends, and a run without
    the value can be placed last (``nulls_last``)."""

    def __init__(self, key: KeyTransform, kind: Literal["number", "string"]) -> None:
        super().__init__(key, output_field=FloatField() if kind == "number" else TextField())
        self.kind = kind

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        raise NotSupportedError(
            f"Sorting by JSON values needs PostgreSQL or SQLite, not {connection.vendor}."
        )

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        cast = "::double precision" if self.kind == "number" else ""
        return (
            f"(CASE WHEN jsonb_typeof({sql}) = %s THEN ({sql} #>> '{{}}'){cast} END)",
            (*params, self.kind, *params),
        )

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        column, params, keys = self.source_expressions[0].preprocess_lhs(compiler, connection)
        path = compile_json_path(keys)
        types = _SQLITE_TYPES[self.kind]
        marks = ", ".join(["%s"] * len(types))
        sql = f"(CASE WHEN JSON_TYPE({column}, %s) IN ({marks}) THEN JSON_EXTRACT({column}, %s) END)"
        return sql, (*params, path, *types, *params, path)
