"""Citations: items of an analysis point back to the passage of the source they match."""

from __future__ import annotations

from pydantic import BaseModel

from m1_mcp.tools.citations import SourceIndex, cite, locate_chunks

SOURCE = (
    "Solar capacity doubled in 2023.\n"
    "Wind turbines now supply a fifth of the grid's power.\n"
    "Battery prices fell by forty percent, making storage cheap.\n"
    "The report ends with a call for new transmission lines.\n"
)


class Summary(BaseModel):
    key_points: list[str]
    conclusions: list[str]


def test_items_are_cited_to_their_passage_chunk_and_lines() -> None:
    half = SOURCE.index("Battery")
    chunks = [SOURCE[: half + 10], SOURCE[half - 5 :]]  # overlapping windows
    spans = locate_chunks(SOURCE, chunks)
    assert spans == [(0, half + 10), (half - 5, len(SOURCE))]
    index = SourceIndex(SOURCE, spans)
    summary = Summary(
        key_points=["Battery storage prices fell sharply", "Solar capacity doubled"],
        conclusions=["zzz qqq"],
    )
    battery, solar, nothing = cite(summary, index)
    assert (battery.field, battery.index) == ("key_points", 0)
    assert battery.source is not None and battery.source.quote.startswith("Battery prices")
    assert battery.source.chunk == 1 and battery.source.start_line == battery.source.end_line == 3
    assert SOURCE[battery.source.start_char : battery.source.end_char].startswith("Battery")
    assert solar.source is not None and solar.source.chunk == 0 and solar.source.start_line == 1
    assert (nothing.field, nothing.source) == ("conclusions", None)


def test_a_chunk_not_found_verbatim_follows_the_previous_one() -> None:
    assert locate_chunks("abcdef", ["abc", "XYZ"]) == [(0, 3), (3, 6)]
