"""analyze_python never raises, whatever text it is given, and only names known constructs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.code_metrics import CONSTRUCT_SKILLS, CodeMetrics, UnparsableSource, analyze_python

# Python-looking fragments make parsable programs likely; raw text covers the rest.
FRAGMENTS = st.sampled_from(
    [
        "def f(x):\n",
        "    ",
        "return f(x - 1)\n",
        "for i in range(3):\n",
        "if x:\n",
        "    pass\n",
        "[a for a in b]\n",
        "try:\n",
        "except E:\n",
        "class C:\n",
        "yield 1\n",
        "(",
        ")",
        "\x00",
        ":",
        "\n",
        "lambda: 0\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(FRAGMENTS, max_size=40).map("".join)))
def test_analysis_never_raises(source: str) -> None:
    result = analyze_python(source)
    assert isinstance(result, CodeMetrics | UnparsableSource)
    if isinstance(result, CodeMetrics):
        assert set(result.constructs) <= set(CONSTRUCT_SKILLS)
        assert result.cyclomatic_complexity >= 1
        assert result.max_nesting_depth >= 0
    else:
        assert result.reason
