"""``snn.testing`` without pytest: a clear error that names the ``test`` extra (issue 14.3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

WITHOUT_PYTEST = """
import sys
sys.modules["pytest"] = None  # as if pytest were not installed
import snn.testing  # needs nothing
try:
    {statement}
except ModuleNotFoundError as exc:
    print("NAME", exc.name)
    print("MESSAGE", exc)
else:
    print("NO ERROR")
"""


@pytest.mark.parametrize(
    ("statement", "user"),
    [
        ("import snn.testing.plugins", "snn.testing.plugins"),
        ("from snn.testing import fresh_plugin_manager", "snn.testing.plugins"),
    ],
)
def test_helpers_without_pytest_name_the_test_extra(statement: str, user: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYTEST.format(statement=statement)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines.get("NAME") == "pytest", result.stdout
    message = lines["MESSAGE"]
    assert message.startswith(f"{user} ")
    assert 'pip install "snn-core[test]"' in message
    assert 'pip install -e "packages/snn-core[test]"' in message


def test_conformance_check_without_pytest_names_the_test_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from snn.testing import BackendConformance, ConformanceCase

    class TorchSuite(BackendConformance):
        backend = "torch"

    monkeypatch.setitem(sys.modules, "pytest", None)
    with pytest.raises(ModuleNotFoundError, match=r'snn.testing.BackendConformance needs pytest.*snn-core\[test\]'):
        TorchSuite().check_case(ConformanceCase(model="lif"))
