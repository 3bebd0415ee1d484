"""Response parsing: code blocks, FINAL / FINAL_VAR lines, output truncation."""

from __future__ import annotations

import pytest

from rlm_engine.parsing import FinalDirective, find_code_blocks, find_final, truncate_output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Done.\nFINAL(42)", FinalDirective("FINAL", "42")),
        (
            "FINAL(The answer is f(x) = (a + b))",
            FinalDirective("FINAL", "The answer is f(x) = (a + b)"),
        ),
        ("FINAL(multi\nline\nanswer)", FinalDirective("FINAL", "multi\nline\nanswer")),
        ('FINAL("quoted (string)")', FinalDirective("FINAL", "quoted (string)")),
        ("FINAL(don't stop (me) now)", FinalDirective("FINAL", "don't stop (me) now")),
        ("FINAL(smile :) )", FinalDirective("FINAL", "smile :)")),
        ("FINAL(unclosed answer", FinalDirective("FINAL", "unclosed answer")),
        ("  FINAL_VAR(result)  ", FinalDirective("FINAL_VAR", "result")),
        ("FINAL_VAR('result')", FinalDirective("FINAL_VAR", "result")),
        ("FINAL(first)\nthinking more\nFINAL(second)", FinalDirective("FINAL", "second")),
    ],
)
def test_find_final(text: str, expected: FinalDirective) -> None:
    assert find_final(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no answer here",
        "I will call FINAL(x) later",  # not at the start of a line
        "```repl\nFINAL('inside code')\n```",  # code is run, not read as prose
        "```python\nx = 1\nFINAL_VAR(x)\n```\nsome text",
    ],
)
def test_no_final_outside_code(text: str) -> None:
    assert find_final(text) is None


def test_final_after_code_block_is_read() -> None:
    text = "```repl\nans = 6 * 7\n```\nFINAL_VAR(ans)"
    assert find_code_blocks(text) == ["ans = 6 * 7\n"]
    assert find_final(text) == FinalDirective("FINAL_VAR", "ans")


def test_code_block_tags() -> None:
    text = (
        "```repl\na = 1\n```\ntext\n```python\nb = 2\n```\n```py\nc = 3\n```\n"
        "```bash\nrm -rf /\n```\n```\nplain = 1\n```\n```Python3\nd = 4\n```"
    )
    assert find_code_blocks(text) == ["a = 1\n", "b = 2\n", "c = 3\n", "d = 4\n"]


def test_code_block_with_inner_backticks_in_string() -> None:
    text = '```repl\ns = "a ``` b"\nprint(s)\n```'
    assert find_code_blocks(text) == ['s = "a ``` b"\nprint(s)\n']


def test_truncate_keeps_head_and_tail() -> None:
    text = "HEAD" + "x" * 10_000 + "TAIL"
    out = truncate_output(text, 1_000)
    assert out.startswith("HEAD") and out.endswith("TAIL")
    assert "characters truncated" in out
    assert len(out) < 1_100
    assert truncate_output("short", 1_000) == "short"
