"""The request parser: ninja's JSON parser, refusing the NUL character anywhere in
a body or a query string (PostgreSQL cannot store it in text or jsonb), with the
words Django's form fields use for it."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from django.http import HttpRequest
from django.utils.datastructures import MultiValueDict
from ninja.errors import ValidationError
from ninja.parser import Parser

NUL_MESSAGE = str(ProhibitNullCharactersValidator.message)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class NulSafeParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = super().parse_body(request)
        if _has_nul(data):
            raise ValidationError([{"loc": ("body",), "msg": NUL_MESSAGE}])
        return data

    def parse_querydict(
        self, data: MultiValueDict, list_fields: list[str], request: HttpRequest
    ) -> dict[str, Any]:
        result = super().parse_querydict(data, list_fields, request)
        if _has_nul(result):  # the query string, or a multipart body's text fields
            where = "query" if data is request.GET else "body"
            raise ValidationError([{"loc": (where,), "msg": NUL_MESSAGE}])
        return result
