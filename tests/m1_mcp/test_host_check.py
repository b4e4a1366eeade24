"""Host values are parsed (name, optional numeric port), never prefix-matched."""

from __future__ import annotations

import pytest

from m1_mcp.host_check import HostRules, split_host


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", "8000")),
        ("LocalHost", ("localhost", None)),
        ("[::1]:9", ("[::1]", "9")),
        ("127.0.0.1:18081.evil.com", None),
        ("127.0.0.1:0", None),
        ("host:65536", None),
        ("a b", None),
        ("", None),
        ("[::1", None),
    ],
)
def test_split_host(value, parsed) -> None:
    assert split_host(value) == parsed


def test_rules() -> None:
    rules = HostRules(["example.com:8443", "Other.Host:*"])
    assert rules.allows("localhost:1234") and rules.allows("127.0.0.1")
    assert rules.allows("example.com:8443") and not rules.allows("example.com:80")
    assert rules.allows("other.host:1") and rules.allows("OTHER.host")
    assert not rules.allows("evil.example") and not rules.allows("localhost.evil:80")
    with pytest.raises(ValueError, match="not a host name"):
        HostRules(["bad host"])
