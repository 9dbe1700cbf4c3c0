"""The shape of the product code: the longest functions and modules.

Tests, migrations, benchmarks and vendored files are left out. Run it as a script to see the
longest ten functions and every module over the limit:

    .venv/bin/python tests/code_shape.py

Its last line reads ``SHAPE max_function=N functions_over=K modules_over=M``.

``tests/test_code_shape.py`` fails when a function passes FUNCTION_MAX lines or a module MODULE_MAX.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metaweb", "apps", "workers")
FUNCTION_MAX = 60
MODULE_MAX = 500


def product_modules(root: Path = ROOT) -> list[Path]:
    """Every Python module of the product, migrations left out."""
    return sorted(
        path
        for package in PACKAGES
        for path in (root / package).rglob("*.py")
        if "migrations" not in path.parts
    )


def function_lengths(root: Path = ROOT) -> list[tuple[int, str]]:
    """(lines, "path:line name") for every function and method, docstring included, longest first."""
    rows = []
    for path in product_modules(root):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                rows.append((length, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)


def module_lengths(root: Path = ROOT) -> list[tuple[int, str]]:
    """(lines, path) for every product module, longest first."""
    rows = [
        (len(path.read_text(encoding="utf-8").splitlines()), str(path.relative_to(root)))
        for path in product_modules(root)
    ]
    return sorted(rows, reverse=True)


def main() -> int:
    functions, modules = function_lengths(), module_lengths()
    for length, where in functions[:10]:
        print(f"{length:5d}  {where}")
    long_modules = [(n, p) for n, p in modules if n > MODULE_MAX]
    for length, where in long_modules:
        print(f"{length:5d}  {where} (module)")
    over = sum(1 for n, _ in functions if n > FUNCTION_MAX)
    print(f"SHAPE max_function={functions[0][0]} functions_over={over} modules_over={len(long_modules)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
