"""The syntax tree of a run search query, and the errors a query can raise.

Positions are 0-based character offsets into the query (``offset``); messages
show them 1-based, as a person counts (``position``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: The comparison operators, longest first (the tokenizer tries them in this order).
Op = Literal[">=", "<=", "!=", ":", "=", ">", "<"]
OPERATORS: tuple[Op, ...] = (">=", "<=", "!=", ":", "=", ">", "<")
#: The operators that compare an order (numbers, dates, strings).
ORDER_OPS: frozenset[str] = frozenset({">", ">=", "<", "<="})


@dataclass(frozen=True)
class Term:
    """``field op value``. ``quoted`` is True when the value was written in quotes,
    which makes it a string whatever it looks like (``config.tag="1"``)."""

    field: str
    op: Op
    value: str
    quoted: bool = False
    offset: int = field(default=0, compare=False)
    value_offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Text:
    """Free text: a bare word or a quoted phrase that is not ``field:value``."""

    value: str
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Term | Text | And | Or | Not


#: How much of a user's text an error message repeats.
SHOWN_CHARS = 40


def shorten(text: str) -> str:
    """``text`` cut to ``SHOWN_CHARS`` characters for an error message."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


class QueryError(ValueError):
    """Any error in a search query. ``str(error)`` is the message to show the user,
    which names the position; ``offset`` is the 0-based character offset."""

    def __init__(self, message: str, *, offset: int) -> None:
        self.message = message
        self.offset = offset
        super().__init__(f"position {offset + 1}: {message}")

    @property
    def position(self) -> int:
        """The 1-based position shown in the message."""
        return self.offset + 1


class QuerySyntaxError(QueryError):
    """The query does not follow the grammar: says what was found and what was expected."""


class QueryFieldError(QueryError):
    """A ``field:value`` term names a field that does not exist (``field``)."""

    def __init__(self, message: str, *, offset: int, field: str) -> None:
        self.field = field
        super().__init__(message, offset=offset)


class QueryValueError(QueryError):
    """A value that does not fit its field (``field``): not a number, not a date,
    not one of the choices, or an operator the field cannot take."""

    def __init__(self, message: str, *, offset: int, field: str) -> None:
        self.field = field
        super().__init__(message, offset=offset)
