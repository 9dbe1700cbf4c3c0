"""The tokenizer of the run search language (see :mod:`apps.experiments.search`).

Tokens: ``(``, ``)``, a ``-`` that negates the term after it, a quoted string,
a bare word (``AND``/``OR``/``NOT`` are bare words the parser treats as keywords),
and a whole ``field<op>value`` term, recognised here because the field, the
operator and the value are written without spaces between them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

from apps.experiments.search.tree import OPERATORS, Op, QuerySyntaxError, shorten

#: The longest query accepted, in characters.
MAX_QUERY_LENGTH = 1000

TokenKind = Literal["(", ")", "-", "string", "word", "term", "end"]
_SPACE = " \t\r\n"
_OP_START = ":=<>!"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    offset: int
    text: str = ""
    #: For a ``term`` token: the operator, the value, whether it was quoted, and
    #: where the value starts.
    op: Op | None = None
    value: str = ""
    quoted: bool = False
    value_offset: int = 0


def describe(token: Token) -> str:
    """How an error message names what it found."""
    if token.kind == "end":
        return "end of query"
    if token.kind in ("(", ")", "-"):
        return f"'{token.kind}'"
    if token.kind == "string":
        return f'the quoted text "{shorten(token.text)}"'
    if token.kind == "term":
        return f"'{shorten(token.text)}{token.op}'"
    return f"'{shorten(token.text)}'"


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an ``end`` token. Raises QuerySyntaxError."""
    _check_characters(query)
    tokens: list[Token] = []
    i = 0
    while True:
        while i < len(query) and query[i] in _SPACE:
            i += 1
        if i >= len(query):
            tokens.append(Token("end", i))
            return tokens
        token, i = _next_token(query, i)
        tokens.append(token)


def _check_characters(query: str) -> None:
    if len(query) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(
            f"the query is {len(query):,} characters long; the limit is {MAX_QUERY_LENGTH:,}",
            offset=MAX_QUERY_LENGTH,
        )
    for i, char in enumerate(query):
        if char not in _SPACE and unicodedata.category(char) in ("Cc", "Cs"):
            raise QuerySyntaxError(f"the character U+{ord(char):04X} is not allowed in a search", offset=i)


def _next_token(query: str, i: int) -> tuple[Token, int]:
    char = query[i]
    if char == "(" or char == ")":
        return Token(char, i, char), i + 1
    if char == '"':
        text, end = _read_quoted(query, i)
        return Token("string", i, text), end
    if char == "-" and i + 1 < len(query) and _starts_term(query[i + 1]):
        return Token("-", i, "-"), i + 1
    if _operator_at(query, i) is not None:
        raise QuerySyntaxError(f"expected a field name before '{_operator_at(query, i)}'", offset=i)
    end = i
    while end < len(query) and _in_word(query, end):
        end += 1
    word = query[i:end]
    op = _operator_at(query, end)
    if op is None:
        return Token("word", i, word), end
    return _read_term(query, field=word, start=i, op=op, op_offset=end)


def _starts_term(char: str) -> bool:
    return char in '("_' or char.isalpha()


def _operator_at(query: str, i: int) -> Op | None:
    if i >= len(query) or query[i] not in _OP_START:
        return None
    for op in OPERATORS:
        if query.startswith(op, i):
            return op
    return None  # a lone "!" is part of a word


def _in_word(query: str, i: int) -> bool:
    char = query[i]
    return char not in _SPACE and char not in '()"' and _operator_at(query, i) is None


def _read_term(query: str, *, field: str, start: int, op: Op, op_offset: int) -> tuple[Token, int]:
    i = op_offset + len(op)
    if i < len(query) and query[i] == '"':
        value, end = _read_quoted(query, i)
        quoted = True
    else:
        end = i
        while end < len(query) and query[end] not in _SPACE and query[end] not in '()"':
            end += 1
        value, quoted = query[i:end], False
        if not value:
            found = "end of query" if i >= len(query) else _name_char(query[i])
            raise QuerySyntaxError(
                f"expected a value right after '{shorten(field)}{op}', found {found}", offset=i
            )
    token = Token("term", start, field, op=op, value=value, quoted=quoted, value_offset=i)
    return token, end


def _name_char(char: str) -> str:
    return "a space" if char in _SPACE else f"'{char}'"


def quoted(text: str) -> str:
    """``text`` as a quoted value that :func:`_read_quoted` reads back as it is: links
    that search for a name (``experiment="Sine \\"v2\\""``) build their terms with it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_quoted(query: str, start: int) -> tuple[str, int]:
    """The text of the quoted string opening at ``start`` and the offset after it.
    A backslash takes the next character literally (``\\"`` and ``\\\\``)."""
    out: list[str] = []
    i = start + 1
    while i < len(query):
        char = query[i]
        if char == "\\" and i + 1 < len(query):
            out.append(query[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise QuerySyntaxError(
        "expected a closing '\"' for the quote opened here, found end of query", offset=start
    )
