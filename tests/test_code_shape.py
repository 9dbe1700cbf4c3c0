"""No product function past FUNCTION_MAX lines and no module past MODULE_MAX (tests/code_shape.py)."""

from tests.code_shape import FUNCTION_MAX, MODULE_MAX, function_lengths, module_lengths


def test_no_function_is_longer_than_the_limit():
    over = [(n, where) for n, where in function_lengths() if n > FUNCTION_MAX]
    assert not over, f"functions over {FUNCTION_MAX} lines (split them along a seam): {over}"


def test_no_module_is_longer_than_the_limit():
    over = [(n, where) for n, where in module_lengths() if n > MODULE_MAX]
    assert not over, f"modules over {MODULE_MAX} lines: {over}"


def test_the_measure_counts_a_function_from_its_def_to_its_last_line(tmp_path):
    package = tmp_path / "apps"
    package.mkdir()
    (package / "m.py").write_text('def f():\n    """Doc."""\n    x = 1\n\n    return x\n')
    assert function_lengths(tmp_path) == [(5, "apps/m.py:1 f")]
    assert module_lengths(tmp_path) == [(5, "apps/m.py")]
