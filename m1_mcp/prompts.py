"""Prompt text for every task: the message builders tools use, and the same tasks as MCP prompts.

One builder per task, so an MCP prompt shows a client exactly what the tool would send.
"""

from __future__ import annotations

from typing import Literal, get_args

from mcp.server.mcpserver import MCPServer
from mcp.types import Completion, CompletionArgument, PromptReference

from m1_runtime.chat.m1 import Message

GENERAL_SYSTEM = "You are a helpful assistant."
MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

DocMode = Literal["summary", "qa", "insights"]
Difficulty = Literal["easy", "medium", "hard"]

_DOC_TASKS = {
    "summary": "Summarize the document: an executive summary, the key points, important details "
    "and the conclusions.",
    "qa": "Write question-answer pairs that a careful reader could answer from the document.",
    "insights": "Find the themes, insights, trends, implications and concrete action items in the "
    "document.",
}


def solve_messages(problem: str, show_steps: bool) -> list[Message]:
    ask = "Solve the problem." + (" Show your work step by step." if show_steps else "")
    return [
        Message(role="system", content=MATH_SYSTEM),
        Message(role="user", content=f"{ask}\n\nProblem:\n{problem}"),
    ]


def practice_messages(topic: str, difficulty: str, count: int) -> list[Message]:
    return [
        Message(role="system", content=GENERAL_SYSTEM),
        Message(
            role="user",
            content=f"Write {count} {difficulty} practice problems about {topic}, each with its "
            "final answer. Answer in JSON.",
        ),
    ]


def document_messages(mode: str, text: str, focus: str | None, part: str = "") -> list[Message]:
    focus_line = f"\nFocus on: {focus}" if focus else ""
    where = f" ({part})" if part else ""
    return [
        Message(role="system", content=GENERAL_SYSTEM),
        Message(
            role="user",
            content=f"{_DOC_TASKS[mode]}{focus_line}\nAnswer in JSON.\n\n"
            f"<document{where}>\n{text}\n</document>",
        ),
    ]


def combine_messages(mode: str, partials: list[str], focus: str | None) -> list[Message]:
    focus_line = f"\nFocus on: {focus}" if focus else ""
    joined = "\n".join(f"<part index={i + 1}>\n{p}\n</part>" for i, p in enumerate(partials))
    return [
        Message(role="system", content=GENERAL_SYSTEM),
        Message(
            role="user",
            content="These are analyses of consecutive parts of one long document. Combine them "
            f"into one analysis of the whole document. {_DOC_TASKS[mode]}{focus_line}\n"
            f"Answer in JSON.\n\n{joined}",
        ),
    ]


def numbered(code: str) -> str:
    return "\n".join(f"{i:>5} | {line}" for i, line in enumerate(code.splitlines(), start=1))


def review_messages(code: str, language: str | None, focus: str | None) -> list[Message]:
    lang = language or "unknown (infer it)"
    focus_line = f"\nFocus on: {focus}" if focus else ""
    return [
        Message(role="system", content=GENERAL_SYSTEM),
        Message(
            role="user",
            content="Review this code. Report bugs, security problems, performance problems, "
            "style issues and departures from best practice; for each give a severity, the line "
            f"number when you know it, what is wrong and how to fix it.{focus_line}\n"
            f"Language: {lang}\nAnswer in JSON.\n\n<code>\n{numbered(code)}\n</code>",
        ),
    ]


def improve_messages(code: str, language: str | None) -> list[Message]:
    lang = language or "unknown (infer it)"
    return [
        Message(role="system", content=GENERAL_SYSTEM),
        Message(
            role="user",
            content="Refactor this code to be clearer, safer and faster without changing what it "
            "does. Give the refactored code, the list of changes and their benefits.\n"
            f"Language: {lang}\nAnswer in JSON.\n\n<code>\n{code}\n</code>",
        ),
    ]


# Values offered while a user fills in a prompt's arguments (completion/complete). Languages are
# suggestions only: the prompts accept any.
LANGUAGES = (
    "bash", "c", "c#", "c++", "css", "dart", "elixir", "erlang", "go", "haskell", "html", "java",
    "javascript", "julia", "kotlin", "lua", "matlab", "nim", "objective-c", "ocaml", "perl",
    "php", "python", "r", "ruby", "rust", "scala", "sql", "swift", "typescript", "zig",
)  # fmt: skip
ARGUMENT_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("practice_problems", "difficulty"): get_args(Difficulty),
    ("analyze_document", "mode"): get_args(DocMode),
    ("review_code", "language"): LANGUAGES,
    ("suggest_improvements", "language"): LANGUAGES,
}
MAX_COMPLETIONS = 100  # the protocol's cap per response


def complete_argument(prompt: str, argument: str, typed: str) -> Completion | None:
    """The choices for one prompt argument that start with what the user typed (any case)."""
    choices = ARGUMENT_CHOICES.get((prompt, argument))
    if choices is None:
        return None
    hits = [c for c in choices if c.startswith(typed.strip().lower())]
    return Completion(
        values=hits[:MAX_COMPLETIONS], total=len(hits), has_more=len(hits) > MAX_COMPLETIONS
    )


def _as_prompt(messages: list[Message]) -> str:
    # MCP prompts carry user text; the system line leads it so nothing is lost.
    return "\n\n".join(m.content for m in messages)


def register(server: MCPServer) -> None:
    @server.prompt(name="solve_problem", description="Solve a math/reasoning problem step by step")
    def solve_prompt(problem: str, show_steps: bool = True) -> str:
        return _as_prompt(solve_messages(problem, show_steps))

    @server.prompt(name="practice_problems", description="Make practice problems with answers")
    def practice_prompt(topic: str, difficulty: Difficulty = "medium", count: int = 3) -> str:
        return _as_prompt(practice_messages(topic, difficulty, count))

    @server.prompt(
        name="analyze_document", description="Summarize, quiz on, or find insights in a document"
    )
    def document_prompt(text: str, mode: DocMode = "summary", focus: str | None = None) -> str:
        return _as_prompt(document_messages(mode, text, focus))

    @server.prompt(name="review_code", description="Review code for bugs, security, performance")
    def review_prompt(code: str, language: str | None = None, focus: str | None = None) -> str:
        return _as_prompt(review_messages(code, language, focus))

    @server.prompt(name="suggest_improvements", description="Refactor code and explain the changes")
    def improve_prompt(code: str, language: str | None = None) -> str:
        return _as_prompt(improve_messages(code, language))

    @server.completion()
    async def complete(ref, argument: CompletionArgument, context) -> Completion | None:
        if not isinstance(ref, PromptReference):
            return None  # no resource templates to complete
        return complete_argument(ref.name, argument.name, argument.value)
