"""The run search language's parser: the grammar, error positions, the limits and
hostile input. No database: parsing and compiling to ``Q`` touch none."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from apps.experiments.search import MAX_DEPTH, MAX_QUERY_LENGTH, MAX_TERMS, QueryError, run_search_q
from apps.experiments.search.parser import parse
from apps.experiments.search.tree import And, Not, Or, QuerySyntaxError, Term, Text


def t(word: str) -> Text:
    return Text(word)


# -- grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_a_blank_query_has_no_tree(query):
    assert parse(query) is None


def test_the_issue_example_parses_into_terms_and_text():
    tree = parse(
        "algorithm:maml status:succeeded config.inner_lr>=0.01 metric.val_loss<0.3 "
        'tag:baseline by:alice created>2026-11-01 "free text"'
    )
    assert tree == And(
        (
            Term("algorithm", ":", "maml"),
            Term("status", ":", "succeeded"),
            Term("config.inner_lr", ">=", "0.01"),
            Term("metric.val_loss", "<", "0.3"),
            Term("tag", ":", "baseline"),
            Term("by", ":", "alice"),
            Term("created", ">", "2026-11-01"),
            t("free text"),
        )
    )


@pytest.mark.parametrize("op", [":", "=", "!=", ">", ">=", "<", "<="])
def test_every_operator(op):
    assert parse(f"seed{op}3") == Term("seed", op, "3")


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("a b", And((t("a"), t("b")))),
        ("a AND b", And((t("a"), t("b")))),
        ("a and b", And((t("a"), t("b")))),
        ("a OR b", Or((t("a"), t("b")))),
        ("a oR b", Or((t("a"), t("b")))),
        ("a OR b c", Or((t("a"), And((t("b"), t("c")))))),
        ("a b OR c", Or((And((t("a"), t("b"))), t("c")))),
        ("a OR b AND c", Or((t("a"), And((t("b"), t("c")))))),
        ("(a OR b) c", And((Or((t("a"), t("b"))), t("c")))),
        ("NOT a b", And((Not(t("a")), t("b")))),
        ("not a OR b", Or((Not(t("a")), t("b")))),
        ("NOT (a OR b)", Not(Or((t("a"), t("b"))))),
        ("NOT NOT a", Not(Not(t("a")))),
        ("-a", Not(t("a"))),
        ("-(a b)", Not(And((t("a"), t("b"))))),
        ('-"a b"', Not(t("a b"))),
        ("-status:failed", Not(Term("status", ":", "failed"))),
        ("((a))", t("a")),
        ("(a)(b)", And((t("a"), t("b")))),
    ],
)
def test_precedence_not_and_or_parentheses(query, tree):
    assert parse(query) == tree


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("-1", t("-1")),  # a negative number is text, not NOT 1
        ("--", t("--")),
        ("- a", And((t("-"), t("a")))),
        ("a-b", t("a-b")),
        ("wow!", t("wow!")),
        ('"OR"', t("OR")),  # a quoted keyword is text
        ('"a \\"quoted\\" word"', t('a "quoted" word')),
        ('"back\\\\slash"', t("back\\slash")),
        ('"\\x"', t("x")),
        ('""', t("")),
        ('experiment:"sine waves"', Term("experiment", ":", "sine waves", quoted=True)),
        ('config.tag="1"', Term("config.tag", "=", "1", quoted=True)),
        ("created>2026-11-01T10:00:00Z", Term("created", ">", "2026-11-01T10:00:00Z")),
        ("config.x>-1.5e-3", Term("config.x", ">", "-1.5e-3")),
        ("(status:running)", Term("status", ":", "running")),
        ("a:b:c", Term("a", ":", "b:c")),
    ],
)
def test_quoting_escapes_and_words(query, tree):
    assert parse(query) == tree


def test_positions_are_recorded_on_the_tree():
    tree = parse('x  seed>=3 "hi"')
    assert isinstance(tree, And)
    term, text = tree.children[1], tree.children[2]
    assert isinstance(term, Term) and (term.offset, term.value_offset) == (3, 9)
    assert isinstance(text, Text) and text.offset == 11


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("created>=", 10, "expected a value right after 'created>=', found end of query"),
        ("status: running", 8, "expected a value right after 'status:', found a space"),
        ("status:)", 8, "expected a value right after 'status:', found ')'"),
        ("(a", 3, "expected ')' to close the '(' at position 1, found end of query"),
        ("(a b c", 7, "expected ')' to close the '(' at position 1, found end of query"),
        ("a)", 2, "found ')' without a '(' before it"),
        ("a AND", 6, "expected a search term or '(' after 'AND', found end of query"),
        ("OR a", 1, "expected a search term or '(', found 'OR'"),
        ("a OR OR b", 6, "expected a search term or '(' after 'OR', found 'OR'"),
        ("()", 2, "expected a search term or '(' after '(', found ')'"),
        ("NOT", 4, "expected a search term or '(' after 'NOT', found end of query"),
        ('"abc', 1, "expected a closing '\"' for the quote opened here, found end of query"),
        ('seed:"3', 6, "expected a closing '\"'"),
        ('"abc\\"', 1, "expected a closing '\"'"),
        (":x", 1, "expected a field name before ':'"),
        ("a >= 3", 3, "expected a field name before '>='"),
        ('"quoted":x', 9, "expected a field name before ':'"),
    ],
)
def test_syntax_errors_name_position_found_and_expected(query, position, message):
    with pytest.raises(QuerySyntaxError) as caught:
        parse(query)
    assert caught.value.position == position
    assert caught.value.offset == position - 1
    assert str(caught.value).startswith(f"position {position}: ")
    assert message in str(caught.value)


# -- limits and hostile input -------------------------------------------------------------


def test_the_length_is_capped():
    assert parse("a" * MAX_QUERY_LENGTH) == t("a" * MAX_QUERY_LENGTH)
    with pytest.raises(QuerySyntaxError, match=f"the limit is {MAX_QUERY_LENGTH:,}"):
        parse("a" * (MAX_QUERY_LENGTH + 1))


def test_nesting_is_capped_before_the_stack_is():
    assert parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH) == t("a")
    with pytest.raises(QuerySyntaxError, match=f"the limit is {MAX_DEPTH}") as caught:
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    assert caught.value.position == MAX_DEPTH + 1
    with pytest.raises(QuerySyntaxError, match="deep"):
        parse("NOT " * (MAX_DEPTH + 1) + "a")
    with pytest.raises(QuerySyntaxError, match="deep"):
        parse("-(" * 300)  # within the length cap, far past the depth cap


def test_the_number_of_terms_is_capped():
    assert isinstance(parse(" ".join(["a"] * MAX_TERMS)), And)
    with pytest.raises(QuerySyntaxError, match=f"more than {MAX_TERMS} terms"):
        parse(" OR ".join(["seed:1"] * (MAX_TERMS + 1)))


@pytest.mark.parametrize(
    ("query", "position"),
    [("a\x00b", 2), ('"\x00"', 2), ("seed:\x1b[2J", 6), ("a\x7f", 2), ("x\ud800", 2)],
)
def test_control_characters_and_lone_surrogates_are_refused(query, position):
    with pytest.raises(QuerySyntaxError, match="is not allowed") as caught:
        parse(query)
    assert caught.value.position == position


def test_unicode_is_text_like_any_other():
    assert parse('experiment:Überlauf "日本語 😀"') == And(
        (Term("experiment", ":", "Überlauf"), t("日本語 😀"))
    )


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("config__x:1", Term("config__x", ":", "1")),
        ("__class__:x", Term("__class__", ":", "x")),
        ("config.__class__:1", Term("config.__class__", ":", "1")),
        ("config.a__b:1", Term("config.a__b", ":", "1")),
        ("metric.x;DROP TABLE", And((t("metric.x;DROP"), t("TABLE")))),
        ("' OR 1=1 --", Or((t("'"), And((Term("1", "=", "1"), t("--")))))),
        (
            "'; DROP TABLE experiments_run; --",
            And((t("';"), t("DROP"), t("TABLE"), t("experiments_run;"), t("--"))),
        ),
    ],
)
def test_injection_shaped_input_is_only_data(query, tree):
    """The parser keeps such strings as field names and text; the compiler then
    refuses the field names (see test_search_compile)."""
    assert parse(query) == tree


def test_random_input_gives_a_tree_or_a_query_error_never_anything_else():
    """Fuzz the parser and the compiler (building a Q needs no database)."""
    alphabet = list("()\"\\:=!<>- \tabcAND OR NOT.config metric seed status created 0123456789_;'%*é\x00")
    rng = random.Random(1234)
    outcomes = {"tree": 0, "error": 0}
    for _ in range(3000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            run_search_q(query=query)
            outcomes["tree"] += 1
        except QueryError as error:
            assert str(error).startswith(f"position {error.position}: ")
            assert 0 <= error.offset <= len(query)
            outcomes["error"] += 1
    assert outcomes["tree"] > 100 and outcomes["error"] > 100


def test_the_search_package_is_torch_free():
    """The run list's selector will import it in the web process."""
    code = (
        "import os, sys, django;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'metaweb.settings.test');"
        "django.setup();"
        "import apps.experiments.search, apps.experiments.search.compile;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_error_messages_repeat_at_most_a_short_part_of_the_input():
    with pytest.raises(QuerySyntaxError) as caught:
        parse("f" * 300 + ">=")
    assert f"expected a value right after '{'f' * 40}…>='" in str(caught.value)
    assert len(str(caught.value)) < 120
