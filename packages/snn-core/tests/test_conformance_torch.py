"""The backend conformance suite: run for "torch", for an independent plain-loop backend, and
shown to catch deliberately wrong backends."""

from __future__ import annotations

import types
from functools import partial

import pytest
import torch

import snn
from snn import surrogate
from snn.testing.conformance import BackendConformance, ConformanceCase

KINDS = ("if", "lif", "plif")
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _plain_kernel(x_seq, states, config, *, learnables=(), store_state_seqs=False, bug=None):
    """An independent multi-step IF / LIF / PLIF kernel: the dynamics written out as a plain loop.

    Half types are computed in float32. ``bug`` injects one deliberate error, to show that the
    conformance suite notices it.
    """
    kind = config.model.name
    hyper = config.hyper
    dtype = x_seq.dtype
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    (v0,) = states
    x_seq, v = x_seq.to(work), v0.to(work)
    if bug == "ignores_v0":
        v = torch.zeros_like(v)
    if bug == "mutates_input" and not x_seq.requires_grad:
        x_seq = x_seq.add_(0.0).mul_(1.0 + 1e-3) if x_seq.dtype == dtype else x_seq
    name = "Sigmoid" if bug == "always_sigmoid" else config.surrogate.name
    params = dict(config.surrogate.params) if name == config.surrogate.name else {}
    if bug == "default_params":
        params = {}
    sf = surrogate.SURROGATES[name](**params)
    v_reset, v_threshold = hyper["v_reset"], hyper["v_threshold"]
    vr = 0.0 if v_reset is None else v_reset
    k = 1.0 / hyper["tau"] if kind == "lif" else (torch.sigmoid(learnables[0].to(work)) if kind == "plif" else None)
    spikes, potentials = [], []
    for x in x_seq:
        if kind == "if":
            h = v + x
        elif hyper["decay_input"]:
            h = v + (x - (v - vr)) * k
        else:
            h = v - (v - vr) * k + x
        s = sf(h - v_threshold)
        sd = s.detach() if config.detach_reset else s
        if v_reset is None and bug != "soft_as_hard":
            v = h - sd * v_threshold
        else:
            v = sd * vr + (1.0 - sd) * h
        spikes.append(s)
        potentials.append(v)
    spike_seq = torch.stack(spikes)
    if bug == "grad_scale":
        spike_seq = spike_seq * 1.001 - (spike_seq * 0.001).detach()
    v_seq = (torch.stack(potentials).to(dtype),) if store_state_seqs else None
    return spike_seq.to(dtype), (v.to(dtype),), v_seq


BUGS = ("ignores_v0", "mutates_input", "always_sigmoid", "default_params", "soft_as_hard", "grad_scale")
plain = partial(_plain_kernel)
for _bug in BUGS:
    globals()[_bug] = partial(_plain_kernel, bug=_bug)


def _backend_plugin(name, target, probe=lambda: None):
    @snn.hookimpl
    def snn_register_backends(register):
        register(
            name,
            {"multi_step": f"{__name__}:{target}"},
            models=KINDS,
            devices=("cpu",),
            dtypes=DTYPES,
            surrogates=surrogate.CLOSED_FORM_SURROGATES,
            probe=probe,
        )

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


class TestTorchConformance(BackendConformance):
    """The reference against itself: the suite's plumbing on every case."""

    backend = "torch"


class TestPlainLoopConformance(BackendConformance):
    """An independent plain autograd loop (IF, LIF, PLIF written out) against the model descriptions."""

    backend = "plainloop"
    plugin = _backend_plugin("plainloop", "plain")
    plugin_name = "plainloop"


@pytest.mark.parametrize(
    ("bug", "group"),
    [
        ("ignores_v0", "dynamics"),
        ("mutates_input", "layouts"),
        ("always_sigmoid", "surrogates"),
        ("default_params", "surrogates"),
        ("soft_as_hard", "dynamics"),
        ("grad_scale", "dtypes"),
    ],
)
def test_suite_detects_a_wrong_backend(bug, group):
    suite_cls = type(
        "WrongSuite", (BackendConformance,),
        {"backend": f"wrong-{bug}", "plugin": _backend_plugin(f"wrong-{bug}", bug), "plugin_name": f"wrong-{bug}"},
    )
    suite = suite_cls()
    cases = suite.conformance_cases(group)
    assert cases and all(c.skip is None for c in cases)
    failures = []
    for case in cases:
        try:
            suite.check_case(case)
        except AssertionError as exc:
            failures.append((case, str(exc)))
    assert failures, f"the suite did not notice bug {bug!r}"
    if bug == "soft_as_hard":  # exactly the soft-reset cases fail (the suite's and the models' examples)
        def soft(c):
            return c.reset == "soft" or (c.reset == "model" and dict(c.hyper).get("v_reset", 0.0) is None)

        assert {c.id for c, _ in failures} == {c.id for c in cases if soft(c)}
    if bug == "always_sigmoid":
        assert all(c.surrogate != "Sigmoid" for c, _ in failures)
        assert len({c.surrogate for c, _ in failures}) == len(surrogate.CLOSED_FORM_SURROGATES) - 1
    if bug == "default_params":  # exactly the cases with non-default surrogate parameters fail
        assert {c.id for c, _ in failures} == {c.id for c in cases if c.surrogate_scale != 1}
    if bug == "grad_scale":
        # a 0.1 % gradient error fails every dtype's tolerance except the half types'
        assert {c.dtype for c, _ in failures} == {torch.float32, torch.float64}
        # (in float64 the rescaled spike is no longer exactly 1.0: the spikes differ first)
        assert all(("gradient of x" in message) or ("spikes" in message) for _, message in failures)
    if bug == "mutates_input":
        assert any("modified one of its inputs" in message for _, message in failures)


def test_suite_skips_with_the_probe_reason():
    suite_cls = type(
        "AbsentSuite", (BackendConformance,),
        {
            "backend": "absent",
            "plugin": _backend_plugin("absent", "plain", probe=lambda: "needs the flux capacitor"),
            "plugin_name": "absent",
        },
    )
    cases = suite_cls().conformance_cases("dynamics")
    assert len(cases) == 1 and "needs the flux capacitor" in cases[0].skip
    with pytest.raises(pytest.skip.Exception, match="flux capacitor"):
        suite_cls().check_case(cases[0])
    # a backend that is not installed at all
    missing = type("MissingSuite", (BackendConformance,), {"backend": "not-installed"})()
    (case,) = missing.conformance_cases("layouts")
    assert "not-installed" in case.skip
    with pytest.raises(pytest.skip.Exception):
        missing.check_case(ConformanceCase("lif"))


def test_suite_matrix_covers_the_claims():
    from snn.plugins import get_registry

    suite = TestTorchConformance()
    dynamics = suite.conformance_cases("dynamics")
    assert {c.model for c in dynamics} == set(get_registry().models)
    assert {(c.model, c.reset, c.detach_reset) for c in dynamics} >= {
        ("plif", "soft", True), ("if", "hardneg", False), ("lif", "hard", True)
    }
    lif_examples = [c for c in dynamics if c.model == "lif" and c.hyper]
    assert {dict(c.hyper).get("decay_input", True) for c in lif_examples} == {True, False}
    assert {c.surrogate for c in suite.conformance_cases("surrogates")} == set(surrogate.CLOSED_FORM_SURROGATES)
    assert {c.dtype for c in suite.conformance_cases("dtypes")} == set(DTYPES)
    assert {c.mode for c in suite.conformance_cases("modes")} == {"single_step"}
    layouts = suite.conformance_cases("layouts")
    assert {c.layout for c in layouts} == {"contiguous", "transposed", "strided"}
    assert {c.grads for c in layouts} == {"all", "none", "states_only", "no_x"}
    assert any(c.shape[0] == 1 for c in layouts)
    narrowed = type("Narrow", (BackendConformance,), {"backend": "torch", "models": ("lif",), "dtypes": (torch.float32,)})()
    assert {(c.model, c.dtype) for c in narrowed.conformance_cases("dtypes")} == {("lif", torch.float32)}
    case = next(c for c in layouts if c.layout == "strided")
    x, _, _ = suite.make_inputs(case, suite.config_for(case, get_registry()))
    assert not x.is_contiguous()
