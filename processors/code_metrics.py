"""Static metrics of a Python code submission, and the concept skills its constructs show.

Pure: source text in, :class:`CodeMetrics` out (or :class:`UnparsableSource` with the
reason). Used by :mod:`processors.code_submissions`; nothing here does I/O.

What is measured (radon for the textbook metrics, the ``ast`` module for the rest):

* cyclomatic complexity (McCabe, radon's ``ComplexityVisitor``): the whole module's
  total and the largest single function or class;
* size (radon's raw metrics): lines, logical lines, source lines, comment lines;
* nesting depth: the deepest chain of nested block statements (``if``/``for``/
  ``while``/``try``/``with``/``match``/``def``/``class``), the module level being 0;
* constructs used, each mapped to a concept skill by :data:`CONSTRUCT_SKILLS`.

Hostile input never raises: null bytes, syntax errors, indentation deeper than the
parser allows, expressions nested past the parser's stack, and trees deeper than
:data:`MAX_TREE_DEPTH` all come back as :class:`UnparsableSource`. The tree is walked
iteratively, so a deep tree cannot exhaust the Python stack here either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from radon.raw import analyze
from radon.visitors import ComplexityVisitor

# Concept skill of each construct. Skill ids are global (the same in every tenant);
# a tenant that wants them in its concept graph creates skills with these ids.
CONSTRUCT_SKILLS: Mapping[str, str] = {
    "conditionals": "python.conditionals",  # if / elif / else, conditional expressions
    "loops": "python.loops",  # for, while (async for included)
    "functions": "python.functions",  # def (async def included)
    "recursion": "python.recursion",  # a function that calls itself
    "comprehensions": "python.comprehensions",  # list/set/dict comprehensions, generator exprs
    "lambdas": "python.lambdas",
    "classes": "python.classes",
    "exceptions": "python.exceptions",  # try/except/finally, raise
    "generators": "python.generators",  # yield, yield from
    "context_managers": "python.context_managers",  # with
    "decorators": "python.decorators",
    "pattern_matching": "python.pattern_matching",  # match / case
    "async": "python.async",  # async def, await, async for/with
}

# Deeper syntax trees are refused before radon (whose visitors recurse) sees them.
# Real programs stay far below: 200 levels is e.g. 60 nested blocks of expressions.
MAX_TREE_DEPTH = 200

_BLOCKS = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Try,
    ast.TryStar,
    ast.With,
    ast.AsyncWith,
    ast.Match,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)
_CONSTRUCT_OF_NODE: tuple[tuple[type[ast.AST] | tuple[type[ast.AST], ...], str], ...] = (
    ((ast.If, ast.IfExp), "conditionals"),
    ((ast.For, ast.AsyncFor, ast.While), "loops"),
    ((ast.FunctionDef, ast.AsyncFunctionDef), "functions"),
    ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions"),
    (ast.Lambda, "lambdas"),
    (ast.ClassDef, "classes"),
    ((ast.Try, ast.TryStar, ast.Raise), "exceptions"),
    ((ast.Yield, ast.YieldFrom), "generators"),
    ((ast.With, ast.AsyncWith), "context_managers"),
    (ast.Match, "pattern_matching"),
    ((ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith), "async"),
)


@dataclass(frozen=True, slots=True)
class CodeMetrics:
    """What the static analysis of one parsable Python source found."""

    cyclomatic_complexity: int  # whole module (>= 1 per block, radon's total)
    max_block_complexity: int  # largest function/class complexity, 0 when none
    lines: int  # physical lines (radon loc)
    logical_lines: int  # statements (radon lloc)
    source_lines: int  # non-blank, non-comment lines (radon sloc)
    comment_lines: int
    max_nesting_depth: int  # nested block statements, 0 = flat module
    functions: int
    classes: int
    constructs: tuple[str, ...]  # keys of CONSTRUCT_SKILLS, sorted

    @property
    def construct_skills(self) -> tuple[str, ...]:
        """The concept skills of the constructs used, sorted."""
        return tuple(sorted(CONSTRUCT_SKILLS[name] for name in self.constructs))

    def as_json(self) -> dict[str, int | list[str]]:
        """JSON-ready form (for the ``code_submissions.metrics`` JSONB column)."""
        return {
            "cyclomatic_complexity": self.cyclomatic_complexity,
            "max_block_complexity": self.max_block_complexity,
            "lines": self.lines,
            "logical_lines": self.logical_lines,
            "source_lines": self.source_lines,
            "comment_lines": self.comment_lines,
            "max_nesting_depth": self.max_nesting_depth,
            "functions": self.functions,
            "classes": self.classes,
            "constructs": list(self.constructs),
        }


@dataclass(frozen=True, slots=True)
class UnparsableSource:
    """Why a source could not be analysed (a short, human-readable reason)."""

    reason: str


def analyze_python(source: str) -> CodeMetrics | UnparsableSource:
    """Static metrics of Python ``source``, or why it cannot be analysed. Never raises."""
    if "\x00" in source:
        return UnparsableSource("source contains null bytes")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:  # IndentationError and "too many nested parentheses" too
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return UnparsableSource(f"{type(exc).__name__}: {exc.msg}{where}")
    except (RecursionError, MemoryError, ValueError) as exc:
        return UnparsableSource(f"{type(exc).__name__}: the parser gave up ({exc})")
    depth = tree_depth(tree)
    if depth > MAX_TREE_DEPTH:
        return UnparsableSource(f"syntax tree {depth} levels deep (limit {MAX_TREE_DEPTH})")
    try:
        complexity = ComplexityVisitor.from_ast(tree)
        raw = analyze(source)
    except (RecursionError, MemoryError, SyntaxError, ValueError) as exc:
        return UnparsableSource(f"{type(exc).__name__} in the metrics: {exc}")
    nodes = list(ast.walk(tree))
    return CodeMetrics(
        cyclomatic_complexity=int(complexity.total_complexity),
        max_block_complexity=max((int(b.complexity) for b in complexity.blocks), default=0),
        lines=int(raw.loc),
        logical_lines=int(raw.lloc),
        source_lines=int(raw.sloc),
        comment_lines=int(raw.comments),
        max_nesting_depth=block_nesting_depth(tree),
        functions=sum(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in nodes),
        classes=sum(isinstance(n, ast.ClassDef) for n in nodes),
        constructs=tuple(sorted(constructs_used(nodes))),
    )


def tree_depth(tree: ast.AST) -> int:
    """Depth of the syntax tree (the root is 1), computed without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def block_nesting_depth(tree: ast.AST) -> int:
    """The deepest nesting of block statements; statements at module level are depth 0."""
    deepest = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        inner = depth + 1 if isinstance(node, _BLOCKS) else depth
        deepest = max(deepest, inner)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))
    return deepest


def constructs_used(nodes: list[ast.AST]) -> set[str]:
    """Names (keys of :data:`CONSTRUCT_SKILLS`) of the constructs among ``nodes``."""
    found: set[str] = set()
    for node in nodes:
        for kinds, name in _CONSTRUCT_OF_NODE:
            if isinstance(node, kinds):
                found.add(name)
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.decorator_list
        ):
            found.add("decorators")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _calls_itself(node):
            found.add("recursion")
    return found


def _calls_itself(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    # f(...) inside def f, or self.f(...) / cls.f(...) inside a method f.
    for call in _calls(function):
        callee = call.func
        if isinstance(callee, ast.Name) and callee.id == function.name:
            return True
        if (
            isinstance(callee, ast.Attribute)
            and callee.attr == function.name
            and isinstance(callee.value, ast.Name)
            and callee.value.id in {"self", "cls"}
        ):
            return True
    return False


def _calls(node: ast.AST) -> Iterator[ast.Call]:
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            yield child
