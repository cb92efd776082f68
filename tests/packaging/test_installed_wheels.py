"""The five distributions as a user gets them: wheels in ``dist/``, ``pip install --find-links``.

``tox -e pkg`` builds the wheels of snn-core, snn-triton, snn-cupy, snn-cpp and snn-online from their
sdists into a fresh folder (``SNN_WHEEL_DIR``), installs ``"snn-core[all]"`` from it into its
own virtualenv with the pinned torch of the constraints file, and runs this module. Elsewhere
(editable installs) the module is skipped: it is about installed wheels only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WHEEL_DIR = os.environ.get("SNN_WHEEL_DIR")
if not WHEEL_DIR:
    pytest.skip("tests of the installed wheels: run them with `tox -e pkg`", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
#: distribution -> its import package and the entry-point name of its plugin
DISTRIBUTIONS = {
    "snn-core": ("snn", None),
    "snn-triton": ("snn_triton", "triton"),
    "snn-cupy": ("snn_cupy", "cupy"),
    "snn-cpp": ("snn_cpp", "cpp"),
    "snn-online": ("snn_online", "online"),
}


def _version() -> str:
    return importlib.metadata.version("snn-core")


def test_dist_holds_one_wheel_of_each_distribution() -> None:
    wheels = sorted(p.name for p in Path(WHEEL_DIR).glob("*.whl"))
    version = _version()
    assert wheels == sorted(f"{d.replace('-', '_')}-{version}-py3-none-any.whl" for d in DISTRIBUTIONS)


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_each_distribution_is_installed_from_its_wheel(distribution: str) -> None:
    dist = importlib.metadata.distribution(distribution)
    assert dist.version == _version()
    direct_url = dist.read_text("direct_url.json")
    assert direct_url is None or '"editable": true' not in direct_url, direct_url
    module = importlib.import_module(DISTRIBUTIONS[distribution][0])
    location = Path(module.__file__).resolve()
    assert ROOT / "packages" not in location.parents, f"{distribution} imported from the checkout: {location}"
    assert (location.parent / "py.typed").is_file()


def test_extras_pin_the_siblings_to_the_same_version() -> None:
    requires = importlib.metadata.requires("snn-core") or []
    version = _version()
    for extra, distribution in (
        ("triton", "snn-triton"), ("cupy", "snn-cupy"), ("cpp", "snn-cpp"), ("online", "snn-online"),
    ):
        assert f'{distribution}=={version}; extra == "{extra}"' in requires
    for sibling in ("snn-triton", "snn-cupy", "snn-cpp", "snn-online"):
        assert f"snn-core=={version}" in (importlib.metadata.requires(sibling) or [])


def test_torch_is_the_pinned_build_and_no_cuda_libraries_came_along() -> None:
    import torch

    constraints = Path(os.environ.get("PIP_CONSTRAINT") or ROOT / ".ci" / "constraints.txt")
    pins = re.findall(r"^torch==(\S+)", constraints.read_text(), flags=re.MULTILINE)
    if pins:
        assert torch.__version__.split("+")[0] == pins[0], (torch.__version__, constraints)
    cuda_wheels = sorted(
        d.metadata["Name"] for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("nvidia-")
    )
    assert cuda_wheels == [] or torch.version.cuda is not None, cuda_wheels


def test_snn_doctor_finds_every_first_party_plugin() -> None:
    executable = Path(sys.executable).with_name("snn")
    result = subprocess.run([str(executable), "doctor", "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    plugins = {p["name"]: p for p in report["plugins"]}
    for distribution, (_, entry_point) in DISTRIBUTIONS.items():
        if entry_point is not None:
            assert plugins[entry_point]["distribution"] == distribution
            assert plugins[entry_point]["error"] is None
    assert {b["name"] for b in report["backends"]} >= {"torch", "triton", "cupy", "cpp"}
    assert report["missing_backends"] == [] and report["failures"] == []
    assert {learner["name"] for learner in report["learners"]} == {"ottt", "sltt", "fptt"}


def test_a_network_trains_and_an_online_learner_runs() -> None:
    import torch

    import snn.functional as F
    from snn import layer, neuron
    from snn_online import OTTTLIFNode, OTTTSequential

    torch.manual_seed(0)
    net = torch.nn.Sequential(layer.Linear(6, 8), neuron.LIFNode(), layer.Linear(8, 3), neuron.LIFNode())
    F.set_step_mode(net, "m")
    x_seq = torch.rand(4, 5, 6) * 3
    loss = F.temporal_efficient_training_cross_entropy(net(x_seq), torch.tensor([0, 1, 2, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())

    model = OTTTSequential(layer.Linear(6, 8), OTTTLIFNode(v_threshold=0.3), layer.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.detach().clone()
    F.ottt_online_training(model, optimizer, x_seq.transpose(0, 1), torch.rand(5, 4, 3),
                           torch.nn.functional.mse_loss, True)
    assert not torch.equal(before, model[0].weight)
