"""What the README, the docs and the example plugin tell a newcomer holds (issue 14).

- The README's Python example (the same code as the docs' front page) is a network that fires:
  its output spikes, so its loss is not the ``ln 10`` of a silent read-out.
- The example plugin's README and the plugin guide give the same install command, with the
  ``test`` extra that its tests need, and the README lists only files that exist.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "snn-example-plugin"


def _readme_example() -> str:
    match = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert match, "the README has no Python example"
    return match.group(1)


def _index_example() -> str:
    text = (ROOT / "docs" / "index.rst").read_text()
    match = re.search(r"\.\. code-block:: python\n\n(.*?)\n(?=\S)", text, re.S)
    assert match, "docs/index.rst has no Python code block"
    return textwrap.dedent(match.group(1)).strip("\n") + "\n"


def test_the_front_page_shows_the_readme_example() -> None:
    assert _index_example() == _readme_example()


@pytest.mark.parametrize("seed", range(5))
def test_the_readme_example_fires(seed: int) -> None:
    torch.manual_seed(seed)
    scope: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(_readme_example(), "README.md", "exec"), scope)
    net, y_seq, loss = scope["net"], scope["y_seq"], scope["loss"]
    assert isinstance(y_seq, torch.Tensor) and y_seq.shape == (8, 32, 10)
    rate = float(y_seq.detach().mean())
    assert 0.0 < rate < 1.0, "the read-out is silent (or saturated)"
    assert f"output firing rate {rate:.3f}" in printed.getvalue()
    assert abs(float(loss.detach()) - math.log(10)) > 1e-4, "loss = ln 10: the outputs carry nothing"
    first_layer = net[0]  # type: ignore[index]  # net: the example's nn.Sequential
    assert first_layer.weight.grad is not None and first_layer.weight.grad.abs().sum() > 0


def test_example_plugin_readme_and_plugin_guide_agree() -> None:
    readme = (EXAMPLE_PLUGIN / "README.md").read_text()
    guide = (ROOT / "docs" / "plugins" / "index.rst").read_text()
    command = 'pip install -e "examples/snn-example-plugin[test]"'
    assert command in readme and command in guide
    assert "--no-deps" not in readme
    extras = re.search(r"\[project\.optional-dependencies\]\n(.*?)\n\n", (EXAMPLE_PLUGIN / "pyproject.toml").read_text(), re.S)
    assert extras and re.search(r'^test = \["snn-core\[test\]', extras.group(1), re.M)


def test_example_plugin_readme_lists_only_files_that_exist() -> None:
    readme = (EXAMPLE_PLUGIN / "README.md").read_text()
    listed = re.findall(r"^\| `([^`]+)` \|", readme, re.M)
    assert "tests/test_example_plugin.py" in listed
    for name in listed:
        candidates = [EXAMPLE_PLUGIN / name, EXAMPLE_PLUGIN / "src" / name]
        assert any(path.exists() for path in candidates), f"the README lists {name}, which does not exist"
