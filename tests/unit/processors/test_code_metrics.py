"""Static analysis of Python submissions: metrics, constructs, and hostile sources.

Complexity and size are radon's (checked on programs whose values are counted by
hand here); constructs and nesting come from the syntax tree. Every hostile source
(null bytes, syntax errors, indentation or parentheses past the parser's limits, a
tree deep enough to exhaust a recursive visitor) comes back as UnparsableSource
with its reason, never as an exception.
"""

from __future__ import annotations

import pytest

from processors.code_metrics import (
    CONSTRUCT_SKILLS,
    MAX_TREE_DEPTH,
    CodeMetrics,
    UnparsableSource,
    analyze_python,
)

RECURSIVE = '''
def factorial(n):
    """n! for n >= 0."""
    if n <= 1:
        return 1
    return n * factorial(n - 1)
'''

EVERYTHING = """
import contextlib


def cached(function):
    return function


class Stack:
    def __init__(self):
        self.items = []

    @cached
    def depth(self, node):
        return 0 if node is None else 1 + self.depth(node.next)


def evens(values):
    for value in values:
        if value % 2 == 0:
            yield value


def parse(text):
    try:
        return int(text)
    except ValueError:
        raise


def shape(point):
    match point:
        case (0, 0):
            return "origin"
        case _:
            return "elsewhere"


async def fetch(client):
    async with client:
        return await client.get()


squares = {n: n * n for n in range(5)}
ordered = sorted([3, 1, 2], key=lambda n: -n)
with contextlib.suppress(KeyError):
    pass
while False:
    pass
"""


def analysed(source: str) -> CodeMetrics:
    result = analyze_python(source)
    assert isinstance(result, CodeMetrics), result
    return result


def test_recursive_function_metrics_counted_by_hand() -> None:
    metrics = analysed(RECURSIVE)
    # McCabe: 1 + one if = 2, the function is the only block.
    assert (metrics.cyclomatic_complexity, metrics.max_block_complexity) == (2, 2)
    assert (metrics.lines, metrics.functions, metrics.classes) == (6, 1, 0)
    assert metrics.max_nesting_depth == 2  # def > if
    assert metrics.constructs == ("conditionals", "functions", "recursion")
    assert metrics.construct_skills == (
        "python.conditionals",
        "python.functions",
        "python.recursion",
    )


def test_every_construct_is_found() -> None:
    metrics = analysed(EVERYTHING)
    assert set(metrics.constructs) == set(CONSTRUCT_SKILLS)
    assert metrics.classes == 1
    assert metrics.max_nesting_depth == 3  # def > for > if
    assert metrics.as_json()["constructs"] == list(metrics.constructs)


def test_a_flat_script_has_depth_zero_and_no_constructs() -> None:
    metrics = analysed("x = 1\nprint(x + 2)\n")
    assert (metrics.max_nesting_depth, metrics.constructs) == (0, ())
    assert metrics.cyclomatic_complexity == 1


def test_method_calling_itself_through_self_is_recursion() -> None:
    source = "class T:\n    def walk(self, n):\n        return self.walk(n - 1) if n else 0\n"
    assert "recursion" in analysed(source).constructs
    assert "recursion" not in analysed("def f(x):\n    return g(x)\n").constructs


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("print('a')\x00\n", "null bytes"),
        ("def f(:\n    pass\n", "SyntaxError"),
        ("x = (" * 300 + ")" * 300, "too many nested parentheses"),
        ("a" + "+a" * 200_000, "RecursionError"),
        (
            "".join(" " * i + "if x:\n" for i in range(105)) + " " * 105 + "pass\n",
            "IndentationError",
        ),
        ("x = " + "-" * 300 + "1", f"limit {MAX_TREE_DEPTH}"),
    ],
)
def test_hostile_sources_are_unparsable_with_a_reason(source: str, reason: str) -> None:
    result = analyze_python(source)
    assert isinstance(result, UnparsableSource)
    assert reason in result.reason
