"""A recursive-descent parser for the run search language.

Grammar (``NOT`` binds tighter than ``AND``, which binds tighter than ``OR``;
keywords are case-insensitive; two terms side by side are joined by ``AND``)::

    query    := [ or_expr ] END
    or_expr  := and_expr ( "OR" and_expr )*
    and_expr := not_expr ( [ "AND" ] not_expr )*
    not_expr := ( "NOT" | "-" ) not_expr | primary
    primary  := "(" or_expr ")" | TERM | WORD | STRING

``TERM`` is ``field<op>value`` with no spaces, ``op`` one of ``: = != > >= < <=``;
``WORD`` and ``STRING`` (double quotes, ``\\`` escaping the next character) are
free text. A ``-`` negates only when a letter, ``_``, ``(`` or ``"`` follows it,
so ``-1`` and ``--`` are plain words.
"""

from __future__ import annotations

from apps.experiments.search.lexer import Token, describe, tokenize
from apps.experiments.search.tree import And, Node, Not, Or, QuerySyntaxError, Term, Text

#: The deepest nesting of parentheses and NOTs accepted.
MAX_DEPTH = 16
#: The most terms (``field:value`` or free text) one query may hold.
MAX_TERMS = 50

_KEYWORDS = frozenset({"and", "or", "not"})


def parse(query: str) -> Node | None:
    """The syntax tree of ``query``, or None when it holds no term (empty or blank).
    Raises QuerySyntaxError naming the position, what it found and what it expected."""
    return _Parser(tokenize(query)).parse()


def _keyword(token: Token) -> str | None:
    if token.kind == "word" and token.text.lower() in _KEYWORDS:
        return token.text.lower()
    return None


def _name(token: Token) -> str:
    keyword = _keyword(token)
    return f"'{keyword.upper()}'" if keyword else describe(token)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.terms = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def parse(self) -> Node | None:
        if self.peek().kind == "end":
            return None
        node = self.or_expr(depth=0)
        token = self.peek()
        if token.kind != "end":  # only a ")" can stop or_expr early
            raise QuerySyntaxError("found ')' without a '(' before it", offset=token.offset)
        return node

    def or_expr(self, *, depth: int) -> Node:
        children = [self.and_expr(depth=depth)]
        while _keyword(self.peek()) == "or":
            self.take()
            children.append(self.and_expr(depth=depth))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self, *, depth: int) -> Node:
        children = [self.not_expr(depth=depth)]
        while True:
            token = self.peek()
            if token.kind in ("end", ")") or _keyword(token) == "or":
                break
            if _keyword(token) == "and":
                self.take()
            children.append(self.not_expr(depth=depth))
        return children[0] if len(children) == 1 else And(tuple(children))

    def not_expr(self, *, depth: int) -> Node:
        token = self.peek()
        if token.kind == "-" or _keyword(token) == "not":
            self.take()
            self._check_depth(depth + 1, token)
            return Not(self.not_expr(depth=depth + 1))
        return self.primary(depth=depth)

    def primary(self, *, depth: int) -> Node:
        before = self.tokens[self.index - 1] if self.index else None
        token = self.take()
        if token.kind == "(":
            self._check_depth(depth + 1, token)
            node = self.or_expr(depth=depth + 1)
            closing = self.take()
            if closing.kind != ")":
                raise QuerySyntaxError(
                    f"expected ')' to close the '(' at position {token.offset + 1}, "
                    f"found {describe(closing)}",
                    offset=closing.offset,
                )
            return node
        if token.kind in ("term", "word", "string") and _keyword(token) is None:
            self._count(token)
            if token.kind == "term":
                assert token.op is not None
                return Term(token.text, token.op, token.value, token.quoted, token.offset, token.value_offset)
            return Text(token.text, token.offset)
        where = f" after {_name(before)}" if before is not None else ""
        raise QuerySyntaxError(
            f"expected a search term or '('{where}, found {describe(token)}", offset=token.offset
        )

    def _check_depth(self, depth: int, token: Token) -> None:
        if depth > MAX_DEPTH:
            raise QuerySyntaxError(
                f"the query nests parentheses and NOTs {depth} deep here; the limit is {MAX_DEPTH}",
                offset=token.offset,
            )

    def _count(self, token: Token) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QuerySyntaxError(
                f"the query has more than {MAX_TERMS} terms; the limit is {MAX_TERMS}",
                offset=token.offset,
            )
