"""analyze_document: summary, question-answer pairs or insights, map-reduce over long documents.

A document that fits the context next to the prompt and the answer goes in one call. A longer one
is cut into overlapping token windows, as large as the context allows (or `doc_chunk_tokens`);
the windows are analysed concurrently (map: up to `doc_parallel_chunks` at once, within the
engine's admission control; their shared instructions hit the prefix cache) and the partial
analyses are combined (reduce), in rounds if they do not fit at once. Every item of the result
is then cited back into the source (citations.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from m1_mcp import prompts
from m1_mcp.tools.citations import Citation, SourceIndex, cite, locate_chunks
from m1_mcp.tools.common import App, InputError, take_text
from m1_mcp.tools.guided_json import guided_schema, json_request, schema_budget
from m1_mcp.tools.runner import Call, Usage, declare, run

# Named margins, in tokens. A chunk's prompt carries a part label ("part 3 of 12") that the
# frame measured without one lacks, and tokens merge differently at a chunk's edges.
PART_LABEL_TOKENS = 32
MIN_CHUNK_TOKENS = 64  # a context that leaves less room than this for the document is refused
PART_TAG_TOKENS = 16  # the <part index=N> tags around one partial analysis when combining

Item = Annotated[str, Field(min_length=3, max_length=120)]


class DocSummary(BaseModel):
    executive_summary: str = Field(max_length=300, description="A few sentences for a busy reader")
    key_points: list[Item] = Field(min_length=1, max_length=5)
    details: list[Item] = Field(max_length=4)
    conclusions: list[Item] = Field(max_length=3)


class QAPair(BaseModel):
    question: str = Field(max_length=120)
    answer: str = Field(max_length=200)


class DocQA(BaseModel):
    qa_pairs: list[QAPair] = Field(min_length=1, max_length=5)


class DocInsights(BaseModel):
    themes: list[Item] = Field(min_length=1, max_length=4)
    insights: list[Item] = Field(min_length=1, max_length=4)
    trends: list[Item] = Field(max_length=3)
    implications: list[Item] = Field(max_length=3)
    action_items: list[Item] = Field(max_length=4)


PAYLOADS: dict[str, type[BaseModel]] = {"summary": DocSummary, "qa": DocQA, "insights": DocInsights}


class DocumentAnalysis(BaseModel):
    mode: prompts.DocMode
    chunks: int = Field(description="How many chunks the document was split into (1: none)")
    document_tokens: int
    summary: DocSummary | None = Field(None, description="Set when mode is 'summary'")
    qa: DocQA | None = Field(None, description="Set when mode is 'qa'")
    insights: DocInsights | None = Field(None, description="Set when mode is 'insights'")
    citations: list[Citation] = Field(
        default_factory=list,
        description="For each item of the analysis, the passage of the source it matches: its "
        "chunk and character and line range (found by word matching, not by the model)",
    )
    usage: Usage


def split_tokens(ids: list[int], size: int, overlap: int) -> list[list[int]]:
    """Windows of `size` tokens, neighbours sharing `overlap` tokens; covers every token."""
    if len(ids) <= size:
        return [ids]
    step = size - overlap
    windows = []
    for start in range(0, len(ids), step):
        windows.append(ids[start : start + size])
        if start + size >= len(ids):
            break
    return windows


@dataclass
class Analysis:
    """analyze_document's job: one guided answer for a document that fits, else map-reduce."""

    document: str
    mode: prompts.DocMode
    focus: str | None

    async def run(self, call: Call) -> DocumentAnalysis:
        engine, s = call.engine, call.app.settings
        payload_model = PAYLOADS[self.mode]
        schema = guided_schema(payload_model)
        answer_budget = schema_budget(schema)
        ids = await anyio.to_thread.run_sync(engine.encode, self.document)
        frame = prompts.document_messages(self.mode, "", self.focus)
        fit = await call.fit(json_request(frame, schema, answer_budget))
        # Room for the document in one prompt, next to the answer's budget.
        room = fit.spare - PART_LABEL_TOKENS
        if room < MIN_CHUNK_TOKENS:
            raise InputError(
                f"the context ({fit.context} tokens) is too small for mode '{self.mode}'"
            )
        group_room = 0  # set below when the document needs combining
        if len(ids) <= room:
            chunks = [self.document]
        else:
            size = room if s.doc_chunk_tokens is None else min(s.doc_chunk_tokens, room)
            overlap = min(s.doc_chunk_overlap, size // 4)
            windows = split_tokens(ids, size, overlap)
            if len(windows) > s.doc_max_chunks:
                raise InputError(
                    f"the document needs {len(windows)} chunks of {size} tokens; the limit is "
                    f"{s.doc_max_chunks}. Send a shorter document."
                )
            combine = prompts.combine_messages(self.mode, [], self.focus)
            # Room for the partial analyses in one combine prompt, next to the combined answer.
            group_room = (await call.fit(json_request(combine, schema, answer_budget))).spare
            group_room -= PART_LABEL_TOKENS
            if group_room < 2 * (answer_budget + PART_TAG_TOKENS):
                # Combining needs at least two partial answers in one prompt, or it never ends.
                raise InputError(
                    f"the document ({len(ids)} tokens) needs map-reduce, but the context "
                    f"({fit.context} tokens) cannot hold two partial answers; "
                    "start the server with a larger max_model_len"
                )
            chunks = [engine.decode(w) for w in windows]

        report = call.report
        report.steps = len(chunks) + (1 if len(chunks) > 1 else 0)
        report.label = f"{len(chunks)} chunks" if len(chunks) > 1 else self.mode
        found: dict[int, BaseModel] = {}
        # No more at once than the engine runs: more would only wait in (and could overflow) the
        # admission queue that other callers share.
        engine_limit = call.engine.stats().get("max_concurrent") or s.doc_parallel_chunks
        limiter = anyio.Semaphore(max(1, min(s.doc_parallel_chunks, engine_limit)))

        async def analyse(i: int, chunk: str) -> None:
            part = f"part {i + 1} of {len(chunks)}" if len(chunks) > 1 else ""
            messages = prompts.document_messages(self.mode, chunk, self.focus, part)
            async with limiter:
                found[i] = await call.generate_json(messages, payload_model, schema)
            if len(chunks) > 1:  # progress counts finished chunks
                await report.milestone(len(found), f"chunk {len(found)}/{len(chunks)} analysed")

        async with anyio.create_task_group() as tg:
            for i, chunk in enumerate(chunks):
                tg.start_soon(analyse, i, chunk)
        partials: list[BaseModel] = [found[i] for i in range(len(chunks))]

        # Reduce in rounds: combine as many partial analyses as fit one prompt, until one is left.
        while len(partials) > 1:
            texts = [p.model_dump_json() for p in partials]
            groups = await group_to_fit(call, texts, group_room)
            report.steps += len(groups) - 1
            merged: list[BaseModel] = []
            for group in groups:
                report.step = min(report.step + 1, report.steps - 1)
                report.label = f"combining {len(group)} parts"
                messages = prompts.combine_messages(self.mode, group, self.focus)
                merged.append(await call.generate_json(messages, payload_model, schema))
            partials = merged

        final = partials[0]
        spans = locate_chunks(self.document, chunks)
        index = await anyio.to_thread.run_sync(SourceIndex, self.document, spans)
        return DocumentAnalysis(
            mode=self.mode,
            chunks=len(chunks),
            document_tokens=len(ids),
            citations=cite(final, index),
            summary=final if self.mode == "summary" else None,
            qa=final if self.mode == "qa" else None,
            insights=final if self.mode == "insights" else None,
            usage=call.usage(),
        )


async def group_to_fit(call: Call, texts: list[str], room: int) -> list[list[str]]:
    """Consecutive partial analyses, grouped so that each group's combine prompt fits `room`
    tokens; a group has at least one (two always fit: the caller checked)."""
    groups: list[list[str]] = [[]]
    used = 0
    for t in texts:
        n = await anyio.to_thread.run_sync(call.engine.count_tokens, t) + PART_TAG_TOKENS
        if groups[-1] and used + n > room:
            groups.append([])
            used = 0
        groups[-1].append(t)
        used += n
    return groups


def register(server: MCPServer, app: App) -> None:
    @declare(server, "analyze_document", "Analyze a document")
    async def analyze_document(
        text: Annotated[str | None, Field(max_length=2_000_000)] = None,
        path: Annotated[str | None, Field(max_length=4096)] = None,
        mode: prompts.DocMode = "summary",
        focus: Annotated[str | None, Field(max_length=500)] = None,
        ctx: Context | None = None,
    ) -> DocumentAnalysis:
        """Analyze a document given inline ('text') or as a file under the configured roots
        ('path'). mode 'summary': executive summary, key points, details, conclusions; 'qa':
        question-answer pairs; 'insights': themes, insights, trends, implications, action items.
        Long documents are split into overlapping chunks and combined (map-reduce)."""
        return await run(app, ctx, Analysis(take_text(app, text, path, "text"), mode, focus))
