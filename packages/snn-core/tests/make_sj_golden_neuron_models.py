"""Print the SpikingJelly 2.0.0 golden values that test_neuron_models.py checks (``GOLDEN``).

Not a test and not run in CI (SpikingJelly is never a dependency). Regenerate with a Python that
has ``spikingjelly==2.0.0`` and torch installed, e.g.::

    /work/sjvenv/bin/python packages/snn-core/tests/make_sj_golden_neuron_models.py

Each case runs one SpikingJelly neuron in multi-step mode in float32 (its registered CPU
kernels for QIF, EIF and Izhikevich, plain autograd for KLIF and CUBA-LIF) from explicit initial
states, with the loss ``sum(spikes) + sum(last states)``; it records the spikes, the last states
and the gradients of the input, of the initial states and of KLIF's ``k``.
"""

from __future__ import annotations

import pprint

import torch
from spikingjelly.activation_based import neuron, surrogate

X = [[0.9, 0.2], [0.6, -0.3], [1.3, 0.8], [0.1, 0.9], [0.7, 0.4], [1.1, 1.6]]

#: name -> (class name, hyper-parameters, surrogate (class name, alpha), initial states, k)
CASES = {
    "qif": ("QIFNode", {"tau": 2.0}, ("Sigmoid", 4.0), {"v": [0.1, -0.05]}, None),
    "qif_soft": ("QIFNode", {"tau": 3.0, "v_c": 0.5, "a0": 0.7, "v_reset": None}, ("ATan", 2.0), {"v": [0.3, 0.0]}, None),
    "eif": ("EIFNode", {"tau": 2.0}, ("Sigmoid", 4.0), {"v": [0.1, -0.05]}, None),
    "eif_soft": ("EIFNode", {"tau": 3.0, "delta_T": 0.5, "theta_rh": 0.6, "v_reset": None}, ("ATan", 2.0), {"v": [0.3, 0.0]}, None),
    "izhikevich": ("IzhikevichNode", {"a": 0.3, "b": 0.2}, ("Sigmoid", 4.0), {"v": [0.1, -0.1], "w": [0.0, 0.05]}, None),
    "izhikevich_soft": (
        "IzhikevichNode", {"tau": 3.0, "a": -0.2, "b": 0.5, "tau_w": 3.0, "v_reset": None, "detach_reset": True},
        ("ATan", 2.0), {"v": [0.2, 0.0], "w": [0.1, -0.1]}, None,
    ),
    "klif": ("KLIFNode", {}, ("Sigmoid", 4.0), {"v": [0.1, 0.0]}, 1.3),
    "klif_scaled_soft": (
        "KLIFNode", {"scale_reset": True, "decay_input": False, "tau": 3.0, "v_reset": None},
        ("ATan", 2.0), {"v": [0.2, -0.1]}, 0.8,
    ),
    "cubalif": ("CUBALIFNode", {}, ("Rect", 1.0), {"v": [0.1, 0.0], "c": [0.0, 0.2]}, None),
    "cubalif_soft": ("CUBALIFNode", {"c_decay": 0.8, "v_decay": 0.9, "v_reset": None}, ("Sigmoid", 4.0),
                     {"v": [0.2, 0.0], "c": [0.1, -0.1]}, None),
}


def rounded(value):
    """Nested lists of float32 values with 8 significant digits (enough to round-trip float32)."""
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return float(f"{value:.8g}")


def run(class_name, hyper, surrogate_spec, initial, k):
    cls = getattr(neuron, class_name)
    hyper = dict(hyper)
    detach = hyper.pop("detach_reset", False)
    node = cls(**hyper, surrogate_function=getattr(surrogate, surrogate_spec[0])(alpha=surrogate_spec[1]))
    node.step_mode = "m"
    node.detach_reset = detach
    if k is not None:
        with torch.no_grad():
            node.k.fill_(k)
    x = torch.tensor(X, requires_grad=True)
    states = {name: torch.tensor(values, requires_grad=True) for name, values in initial.items()}
    for name, value in states.items():
        setattr(node, name, value)
    spikes = node(x)
    last = {name: getattr(node, name) for name in states}
    loss = spikes.sum() + sum(v.sum() for v in last.values())
    params = [node.k] if k is not None else []
    grads = torch.autograd.grad(loss, [x, *states.values(), *params])
    out = {
        "spikes": spikes.tolist(),
        "last": {name: rounded(v.tolist()) for name, v in last.items()},
        "grad_x": rounded(grads[0].tolist()),
        "grad_initial": {name: rounded(g.tolist()) for name, g in zip(states, grads[1:])},
    }
    if k is not None:
        out["grad_k"] = rounded(grads[-1].item())
    return out


def main() -> None:
    golden = {name: run(*case) for name, case in CASES.items()}
    pprint.pprint(golden, width=110, sort_dicts=False)


if __name__ == "__main__":
    main()
