"""analyze_document: summary, question-answer pairs or insights, map-reduce over long documents.

A document that fits the context next to the prompt and the answer goes in one call. A longer one
is cut into overlapping token windows; each window is analysed on its own (map, one progress step
per chunk) and the partial analyses are combined (reduce) — in rounds if they do not fit at once.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from m1_mcp import prompts
from m1_mcp.tools.common import (
    READ_ONLY,
    App,
    InputError,
    Reporter,
    Usage,
    generate_json,
    guided_schema,
    schema_budget,
    take_text,
    user_errors,
    wait_ready,
)
from m1_runtime.engine import Generation

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


def register(server: MCPServer, app: App) -> None:
    @server.tool(
        name="analyze_document",
        title="Analyze a document",
        annotations=READ_ONLY,
        description="Analyze a document given inline ('text') or as a file under the configured "
        "roots ('path'). mode 'summary': executive summary, key points, details, conclusions; "
        "'qa': question-answer pairs; 'insights': themes, insights, trends, implications, action "
        "items. Long documents are split into overlapping chunks and combined (map-reduce).",
    )
    @user_errors
    async def analyze_document(
        text: Annotated[str | None, Field(max_length=2_000_000)] = None,
        path: Annotated[str | None, Field(max_length=4096)] = None,
        mode: prompts.DocMode = "summary",
        focus: Annotated[str | None, Field(max_length=500)] = None,
        ctx: Context | None = None,
    ) -> DocumentAnalysis:
        document = take_text(app, text, path, "text")
        report = Reporter(ctx)
        await wait_ready(app, report)
        engine, s = app.engine, app.settings
        payload_model = PAYLOADS[mode]
        schema = guided_schema(payload_model)
        answer_budget = schema_budget(schema)

        ids = await anyio.to_thread.run_sync(engine.encode, document)
        overhead = len(
            await anyio.to_thread.run_sync(
                engine.encode, engine.render_messages(prompts.document_messages(mode, "", focus))
            )
        )
        # Room for the document in one prompt, leaving the answer's budget and a margin for the
        # part label and tokenisation differences at the edges.
        room = engine.max_model_len - answer_budget - overhead - 32
        if room < 64:
            raise InputError(
                f"the context ({engine.max_model_len} tokens) is too small for mode '{mode}'"
            )
        if len(ids) <= room:
            chunks = [document]
        else:
            size = min(s.doc_chunk_tokens, room)
            overlap = min(s.doc_chunk_overlap, size // 4)
            windows = split_tokens(ids, size, overlap)
            if len(windows) > s.doc_max_chunks:
                raise InputError(
                    f"the document needs {len(windows)} chunks of {size} tokens; the limit is "
                    f"{s.doc_max_chunks}. Send a shorter document."
                )
            if room - 64 < 2 * answer_budget:
                # Combining needs at least two partial answers in one prompt, or it never ends.
                raise InputError(
                    f"the document ({len(ids)} tokens) needs map-reduce, but the context "
                    f"({engine.max_model_len} tokens) cannot hold two partial answers; "
                    "start the server with a larger max_model_len"
                )
            chunks = [engine.decode(w) for w in windows]

        gens: list[Generation] = []
        report.steps = len(chunks) + (1 if len(chunks) > 1 else 0)
        partials: list[BaseModel] = []
        for i, chunk in enumerate(chunks):
            report.step = i
            report.label = f"chunk {i + 1}/{len(chunks)}" if len(chunks) > 1 else mode
            part = f"part {i + 1} of {len(chunks)}" if len(chunks) > 1 else ""
            result, gen = await generate_json(
                app,
                prompts.document_messages(mode, chunk, focus, part),
                payload_model,
                report,
                schema=schema,
            )
            partials.append(result)
            gens.append(gen)

        # Reduce in rounds: combine as many partial analyses as fit one prompt, until one is left.
        while len(partials) > 1:
            texts = [p.model_dump_json() for p in partials]
            groups = await _group_to_fit(app, mode, focus, texts, room)
            report.steps += len(groups) - 1
            merged: list[BaseModel] = []
            for group in groups:
                report.step = min(report.step + 1, report.steps - 1)
                report.label = f"combining {len(group)} parts"
                result, gen = await generate_json(
                    app,
                    prompts.combine_messages(mode, group, focus),
                    payload_model,
                    report,
                    schema=schema,
                )
                merged.append(result)
                gens.append(gen)
            partials = merged

        final = partials[0]
        return DocumentAnalysis(
            mode=mode,
            chunks=len(chunks),
            document_tokens=len(ids),
            summary=final if mode == "summary" else None,
            qa=final if mode == "qa" else None,
            insights=final if mode == "insights" else None,
            usage=Usage.of(gens),
        )


async def _group_to_fit(
    app: App, mode: str, focus: str | None, texts: list[str], room: int
) -> list[list[str]]:
    engine = app.engine
    groups: list[list[str]] = [[]]
    used = 0
    for t in texts:
        n = await anyio.to_thread.run_sync(engine.count_tokens, t) + 16
        if groups[-1] and used + n > room - 64:  # 64: the combine prompt's longer wording
            groups.append([])
            used = 0
        groups[-1].append(t)
        used += n
    return groups
