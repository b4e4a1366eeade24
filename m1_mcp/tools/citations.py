"""Citations for a document analysis: each key point, answer or insight points back into the
source (the chunk it falls in, and the character and line range of the passage it matches).

The model writes the items; the citations are found afterwards by matching each item's words
against the source's sentences (the passage sharing the largest share of the item's content
words wins). That is honest about what it is: a pointer a reader can check, not the model's
claim. An item that shares no content word with the source gets no citation.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel, Field

_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
# A passage: a sentence, or a line without sentence punctuation; at most this many characters.
_PASSAGE = re.compile(r"[^.!?\n]+[.!?]*")
MAX_PASSAGE_CHARS = 400
QUOTE_CHARS = 160
# Words too common to tell passages apart.
_STOP = frozenset(
    "the and for are but not you all any can had her was one our out has have him his how its "
    "may new now old see two way who did get let put say she too use that this with from they "
    "will would there their what when which were been into more than then them these some such "
    "also only other each about after before over under very just like your".split()
)


class SourceSpan(BaseModel):
    chunk: int = Field(description="The chunk (0-based) the passage lies in; 0 when unsplit")
    start_char: int = Field(description="Offset of the passage's first character in the source")
    end_char: int = Field(description="Offset just past its last character")
    start_line: int = Field(description="Line (1-based) where the passage starts")
    end_line: int = Field(description="Line where it ends")
    quote: str = Field(max_length=QUOTE_CHARS + 1, description="The passage's start")


class Citation(BaseModel):
    field: str = Field(description="The result field, e.g. 'key_points' or 'qa_pairs'")
    index: int = Field(description="The item's position in that field")
    source: SourceSpan | None = Field(description="Where in the source it is grounded, if found")


def _words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP}


def locate_chunks(source: str, chunks: list[str]) -> list[tuple[int, int]]:
    """Each chunk's character range in the source. Chunks are decoded token windows in order,
    overlapping; one that is not found verbatim (a tokenizer that normalises text) starts where
    the previous one ended."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for chunk in chunks:
        at = source.find(chunk, max(cursor - len(chunk), 0)) if chunk else -1
        start = at if at >= 0 else cursor
        end = min(start + len(chunk), len(source))
        spans.append((start, end))
        cursor = end
    return spans


class SourceIndex:
    """The source's passages, indexed by content word."""

    def __init__(self, source: str, chunk_spans: list[tuple[int, int]]) -> None:
        self.source = source
        self.chunk_starts = [start for start, _ in chunk_spans] or [0]
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.passages: list[tuple[int, int]] = []
        self.index: dict[str, list[int]] = defaultdict(list)
        for match in _PASSAGE.finditer(source):
            start, end = match.start(), min(match.end(), match.start() + MAX_PASSAGE_CHARS)
            words = _words(source[start:end])
            if not words:
                continue
            pid = len(self.passages)
            self.passages.append((start, end))
            for word in words:
                self.index[word].append(pid)

    def find(self, text: str) -> SourceSpan | None:
        words = _words(text)
        if not words:
            return None
        hits: Counter[int] = Counter()
        for word in words:
            hits.update(self.index.get(word, ()))
        if not hits:
            return None
        # Most shared words; among equals, the earliest passage.
        pid = min(hits, key=lambda p: (-hits[p], p))
        start, end = self.passages[pid]
        while start < end and self.source[start].isspace():
            start += 1
        return SourceSpan(
            chunk=max(bisect.bisect_right(self.chunk_starts, start) - 1, 0),
            start_char=start,
            end_char=end,
            start_line=bisect.bisect_right(self.line_starts, start),
            end_line=bisect.bisect_right(self.line_starts, max(end - 1, start)),
            quote=self.source[start : min(end, start + QUOTE_CHARS)],
        )


def cite(payload: BaseModel, index: SourceIndex) -> list[Citation]:
    """A citation for every item of every list field of the analysis (a QA pair is matched on
    its answer and question together)."""
    citations = []
    for name, value in payload.model_dump().items():
        if not isinstance(value, list):
            continue
        for i, item in enumerate(value):
            text = _item_text(item)
            citations.append(Citation(field=name, index=i, source=index.find(text)))
    return citations


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        return " ".join(str(item.get(k, "")) for k in ("answer", "question"))
    return str(item)
