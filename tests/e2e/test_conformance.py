"""The MCP conformance suite (@modelcontextprotocol/conformance, run through npx on Node 22)
against two servers over Streamable HTTP: the fixture server (our server factory and HTTP stack
plus the suite's fixture tools, resources and prompts) on every scenario, and `m1-mcp serve` on
every scenario that needs no fixture. Expectations, with reasons: tests/conformance/expected.toml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import HttpServer, server_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npx") is None, reason="node/npx not installed"),
]

REPO = Path(__file__).resolve().parents[2]
EXPECTED = tomllib.loads((REPO / "tests/conformance/expected.toml").read_text())
SUITE = "@modelcontextprotocol/conformance@0.1.16"
# The suite needs Node 22; the npm package node@22 brings it, whatever node is installed.
NPX = ["npx", "-y", "-p", "node@22", "-p", SUITE]


def conformance(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NPX, "conformance", *args], capture_output=True, text=True, timeout=timeout
    )


def suite_scenarios() -> list[str]:
    listing = conformance("list", "--server").stdout
    names = re.findall(r"^\s*- (\S+)", listing, flags=re.M)
    assert names, listing
    return names


def run_scenarios(url: str, scenarios: list[str] | None, out: Path) -> dict[str, list[dict]]:
    """Run the suite (all of it, or the given scenarios) and return each scenario's checks."""
    if scenarios is None:
        proc = conformance("server", "--url", url, "--suite", "all", "-o", str(out))
    else:
        # One Node process for the lot: npx resolves the packages once.
        loop = "; ".join(
            f"conformance server --url {url} --scenario {s} -o {out} >/dev/null" for s in scenarios
        )
        proc = subprocess.run(
            [*NPX, "sh", "-c", loop],
            capture_output=True,
            text=True,
            timeout=240,
        )
    results: dict[str, list[dict]] = {}
    for folder in sorted(out.iterdir()):
        match = re.fullmatch(r"server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z", folder.name)
        if match:
            results[match.group(1)] = json.loads((folder / "checks.json").read_text())
    assert results, f"no results from the suite:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return results


def judge(results: dict[str, list[dict]], expected_failures: dict[str, str]) -> list[str]:
    """Every way the results differ from the expectations, as readable lines."""
    problems = []
    for scenario, checks in results.items():
        failed = [c for c in checks if c["status"] == "FAILURE"]
        if failed and scenario not in expected_failures:
            problems += [f"{scenario}: {c['id']} failed: {c.get('errorMessage')}" for c in failed]
        if not failed and scenario in expected_failures:
            problems.append(f"{scenario} passes now: remove it from expected.toml")
        for c in checks:
            if c["status"] == "WARNING" and f"{scenario}/{c['id']}" not in EXPECTED["warnings"]:
                why = c.get("errorMessage")
                problems.append(f"{scenario}: unexplained warning {c['id']}: {why}")
    return problems


@pytest.fixture(scope="module")
def scenarios() -> list[str]:
    return suite_scenarios()


@pytest.fixture(scope="module")
def fixture_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("fixture") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.conformance.fixture_server", "--port", "0"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=server_env(),
        )
        try:
            deadline = time.monotonic() + 60
            while not (found := re.search(r"listening on (\S+)", log_path.read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield found.group(1)
        finally:
            proc.terminate()  # our own child, by pid
            proc.wait(timeout=30)


def test_expectations_cover_the_suite(scenarios: list[str]) -> None:
    listed = set(EXPECTED["real_server"]["needs_fixtures"])
    assert listed <= set(scenarios), listed - set(scenarios)
    for section in ("fixture_server", "real_server"):
        assert set(EXPECTED[section]["failures"]) <= set(scenarios)


def test_fixture_server_passes_the_whole_suite(
    fixture_server_url: str, scenarios: list[str], tmp_path: Path
) -> None:
    results = run_scenarios(fixture_server_url, None, tmp_path)
    assert set(results) == set(scenarios), set(scenarios) ^ set(results)
    assert judge(results, EXPECTED["fixture_server"]["failures"]) == []


def test_real_server_passes_every_scenario_without_fixtures(
    scenarios: list[str], tmp_path: Path
) -> None:
    chosen = [s for s in scenarios if s not in EXPECTED["real_server"]["needs_fixtures"]]
    srv = HttpServer("streamable-http", tmp_path / "server.log", [], server_env())
    try:
        # The engine loads in the background meanwhile; no scenario here needs it.
        results = run_scenarios(srv.url, chosen, tmp_path / "results")
    finally:
        code, alive = srv.stop()
    assert set(results) == set(chosen), set(chosen) ^ set(results)
    assert judge(results, EXPECTED["real_server"]["failures"]) == []
    assert (code, alive) == (0, [])
