"""The tests' own helpers: a test that needs a missing service skips, unless CI requires it"""

import re
from pathlib import Path

import pytest
from helpers import skip_unless_required
from runtime_servers import ROOT

REASON = "no Redis at 127.0.0.1:6379"


def test_a_missing_service_skips_the_test(monkeypatch):
    monkeypatch.delenv("REQUIRE_REDIS", raising=False)

    with pytest.raises(pytest.skip.Exception) as outcome:
        skip_unless_required("REQUIRE_REDIS", REASON)

    assert outcome.value.msg == REASON


@pytest.mark.parametrize("value", ["", None])
def test_an_empty_switch_is_unset(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("REQUIRE_CHROMIUM", raising=False)
    else:
        monkeypatch.setenv("REQUIRE_CHROMIUM", value)

    with pytest.raises(pytest.skip.Exception):
        skip_unless_required("REQUIRE_CHROMIUM", "no chromium")


def test_a_required_service_that_is_missing_fails_the_test(monkeypatch):
    monkeypatch.setenv("REQUIRE_REDIS", "1")

    with pytest.raises(pytest.fail.Exception) as outcome:
        skip_unless_required("REQUIRE_REDIS", REASON)

    assert outcome.value.msg == f"REQUIRE_REDIS is set, but {REASON}"
    assert outcome.value.pytrace is False


def test_ci_requires_every_service_the_tests_can_skip():
    used = {
        switch
        for path in (ROOT / "tests").rglob("*.py")
        if path != Path(__file__)
        for switch in re.findall(r'"(REQUIRE_[A-Z]+)"', path.read_text())
    }
    exports = re.findall(r"^export (REQUIRE_.*)$", (ROOT / ".ci/run").read_text(), re.M)
    exported = {assignment.split("=")[0] for line in exports for assignment in line.split()}

    assert used == {"REQUIRE_POSTGRESQL", "REQUIRE_REDIS", "REQUIRE_PGBOUNCER", "REQUIRE_CHROMIUM"}
    assert exported == used
    assert all(assignment.endswith("=1") for line in exports for assignment in line.split())
