"""Prompt text for every task: the message builders tools use, and the same tasks as MCP prompts.

One builder per task, so an MCP prompt shows a client exactly what the tool would send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, Completion, CompletionArgument, PromptReference
from pydantic import ValidationError

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


class CheckedPrompt(Prompt):
    """A prompt whose bad arguments are a JSON-RPC -32602 error naming what is wrong.

    The SDK turns every rendering failure (a missing or mistyped argument included) into code 0
    with "Error rendering prompt X"; a client cannot tell its own mistake from a server fault.
    Unknown argument names are refused too, the same way: a misspelt `show_step` would
    otherwise be dropped without a word.
    """

    async def render(self, arguments: dict[str, Any] | None, context: Any) -> Any:
        given = dict(arguments or {})
        names = [a.name for a in self.arguments or []]
        unknown = sorted(set(given) - set(names))
        if unknown:
            takes = ", ".join(names)
            raise _invalid(self.name, f"unknown argument(s) {_quoted(unknown)}; it takes {takes}")
        missing = [a.name for a in self.arguments or [] if a.required and a.name not in given]
        if missing:
            raise _invalid(self.name, f"missing required argument(s) {_quoted(missing)}")
        try:
            return await super().render(given, context)
        except ValueError as exc:
            # Our prompt bodies only format text: a ValidationError under the SDK's wrapper is
            # pydantic refusing an argument value (validate_call runs before the body).
            if isinstance(exc.__cause__, ValidationError):
                raise _invalid(self.name, _describe(exc.__cause__)) from exc.__cause__
            raise


def _invalid(prompt: str, what: str) -> MCPError:
    message = f"Prompt {prompt!r}: {what}"
    return MCPError(code=INVALID_PARAMS, message=message, data={"prompt": prompt})


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"]) or "arguments"
        parts.append(f"argument {where!r}: {e['msg']}")
    return "; ".join(parts)


def _add(server: MCPServer, fn: Callable[..., str], name: str, description: str) -> None:
    server.add_prompt(CheckedPrompt.from_function(fn, name=name, description=description))


def register(server: MCPServer) -> None:
    def solve_prompt(problem: str, show_steps: bool = True) -> str:
        return _as_prompt(solve_messages(problem, show_steps))

    def practice_prompt(topic: str, difficulty: Difficulty = "medium", count: int = 3) -> str:
        return _as_prompt(practice_messages(topic, difficulty, count))

    def document_prompt(text: str, mode: DocMode = "summary", focus: str | None = None) -> str:
        return _as_prompt(document_messages(mode, text, focus))

    def review_prompt(code: str, language: str | None = None, focus: str | None = None) -> str:
        return _as_prompt(review_messages(code, language, focus))

    def improve_prompt(code: str, language: str | None = None) -> str:
        return _as_prompt(improve_messages(code, language))

    _add(server, solve_prompt, "solve_problem", "Solve a math/reasoning problem step by step")
    _add(server, practice_prompt, "practice_problems", "Make practice problems with answers")
    _add(
        server,
        document_prompt,
        "analyze_document",
        "Summarize, quiz on, or find insights in a document",
    )
    _add(server, review_prompt, "review_code", "Review code for bugs, security, performance")
    _add(server, improve_prompt, "suggest_improvements", "Refactor code and explain the changes")

    @server.completion()
    async def complete(ref, argument: CompletionArgument, context) -> Completion | None:
        if not isinstance(ref, PromptReference):
            return None  # no resource templates to complete
        return complete_argument(ref.name, argument.name, argument.value)
