"""mypy with snn's configuration catches wrong hook implementations (``snn.mypy_plugin``).

Runs mypy on ``typing/hook_implementations.py``, whose lines say which error codes they must get
(``# expect: CODE``), and compares both ways: every expected error is reported, nothing else
is. ``tox -e lint`` runs this test; where mypy is not installed it is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (tox -e lint runs this test)")

ROOT = Path(__file__).resolve().parents[3]
CASES = Path(__file__).resolve().parent / "typing" / "hook_implementations.py"
_EXPECT = re.compile(r"#\s*expect:\s*([\w,\s-]+)$")
_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[\w-]+)\]$")


def _expected() -> set[tuple[int, str]]:
    found = set()
    for number, line in enumerate(CASES.read_text(encoding="utf-8").splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            found |= {(number, code.strip()) for code in match.group(1).split(",") if code.strip()}
    return found


MypyResult = tuple[set[tuple[int, str]], dict[int, list[str]], str]


def _run_mypy(path: Path) -> MypyResult:
    stdout, stderr, _ = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(ROOT / ".mypy_cache"),
        "--no-error-summary", "--no-pretty",
        str(path),
    ])
    errors: set[tuple[int, str]] = set()
    messages: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            number = int(match.group("line"))
            errors.add((number, match.group("code")))
            messages.setdefault(number, []).append(match.group("message"))
    return errors, messages, stdout + stderr


@pytest.fixture(scope="module")
def mypy_result() -> MypyResult:
    return _run_mypy(CASES)


def test_every_wrong_implementation_is_reported_and_nothing_else(mypy_result: MypyResult) -> None:
    errors, _, output = mypy_result
    expected = _expected()
    assert len(expected) >= 9, "the case file lost its expectations"
    assert errors == expected, f"missing: {sorted(expected - errors)}; unexpected: {sorted(errors - expected)}\n{output}"


def test_a_wrong_registrar_is_named_with_the_one_the_hook_passes(mypy_result: MypyResult) -> None:
    _, messages, _ = mypy_result
    lines = CASES.read_text(encoding="utf-8").splitlines()
    (line,) = [n for n, text in enumerate(lines, start=1) if "register: LossRegistrar) -> None:" in text
               and "snn_register_backends" in text]
    assert messages[line - 1] == [
        'Argument "register" of hook implementation "snn_register_backends" has type "LossRegistrar", '
        'but the hook passes "BackendRegistrar"'
    ]


def test_the_plugins_of_every_distribution_type_check() -> None:
    """The in-tree plugins, snn-online's and the example plugin's hooks pass the same checks."""
    sources = [
        ROOT / "packages" / "snn-core" / "src" / "snn" / "neuron" / "__init__.py",
        ROOT / "packages" / "snn-core" / "src" / "snn" / "backends" / "torch.py",
        ROOT / "packages" / "snn-core" / "src" / "snn" / "strategies.py",
        ROOT / "packages" / "snn-core" / "src" / "snn" / "losses.py",
        ROOT / "packages" / "snn-online" / "src" / "snn_online" / "plugin.py",
        ROOT / "examples" / "snn-example-plugin" / "src" / "snn_example_plugin" / "plugin.py",
    ]
    for source in sources:
        errors, _, output = _run_mypy(source)
        assert errors == set(), output
