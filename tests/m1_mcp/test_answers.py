"""Answer extraction from a reasoning model's free text."""

from __future__ import annotations

from m1_mcp.tools.answers import extract_boxed, final_answer


def test_extract_boxed_and_final_answer() -> None:
    assert extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{1} then \boxed{2}") == "2"
    assert extract_boxed(r"\boxed{3} and cut \boxed{4") == "3"
    assert extract_boxed("no box") is None
    assert final_answer("line one\nthe answer is 7.\n\n") == "7"
    assert final_answer("17*3 = 51\nThe answer is: **51**\nMore words") == "51"
    assert final_answer("line one\nlast line\n") == "last line"
    assert final_answer(r"x \boxed{42}") == "42"
    assert final_answer("") == ""
