"""Kernel sources generated from kernel plans, and the private cache of generated modules."""

from __future__ import annotations

import os
import struct
import sys

import pytest
from snn_triton_test_helpers import SYNTHETIC_MODELS, all_model_names

from snn.expr import render, var
from snn.models import kernel_plan
from snn.plugins import get_registry
from snn.surrogate import CLOSED_FORM_SURROGATES, SURROGATES, ATan, Sigmoid
from snn_triton import codegen, source_cache
from snn_triton.codegen import STORAGE_TYPES, BackwardVariant, backward_source, forward_source

pytestmark = pytest.mark.usefixtures("synthetic_models")


def model_named(name):
    return SYNTHETIC_MODELS.get(name) or get_registry().model(name)


def full_variant(m):
    return BackwardVariant(True, (True,) * m, (True,) * m, True, True)


@pytest.mark.parametrize("name", all_model_names())
@pytest.mark.parametrize("storage", STORAGE_TYPES)
def test_every_model_renders_valid_python(name, storage):
    for v_reset in (0.0, None):
        plan = kernel_plan(model_named(name).config(ATan().spec, detach_reset=True, v_reset=v_reset))
        m = len(plan.states)
        sources = [forward_source(plan, storage, save, store) for save in (False, True) for store in (False, True)]
        sources += [
            backward_source(plan, storage, BackwardVariant(spikes, (last,) * m, (seqs,) * m, True, True))
            for spikes in (False, True) for last in (False, True) for seqs in (False, True)
        ]
        for generated in sources:
            compile(generated.source, f"<{name}>", "exec")
            assert "def kernel(" + ", ".join(generated.parameters) + ", T, N, BLOCK: tl.constexpr):" in generated.source


@pytest.mark.parametrize("name", CLOSED_FORM_SURROGATES)
def test_every_closed_form_surrogate_renders(name):
    plan = kernel_plan(model_named("lif").config(SURROGATES[name]().spec))
    compile(backward_source(plan, "float32", full_variant(1)).source, name, "exec")


def test_parameters_follow_what_the_plan_and_variant_need():
    plan = kernel_plan(model_named("plif").config(Sigmoid().spec))
    forward = forward_source(plan, "float32", save=True, store_seqs=False)
    assert forward.parameters == ("x_ptr", "state0_ptr_0", "param_ptr", "spike_ptr", "charged_ptr_0", "last_ptr_0")
    backward = backward_source(plan, "float32", BackwardVariant(False, (True,), (False,), True, False))
    # PLIF's w gradient reads the initial potential: it is an argument; no x (not saved)
    assert backward.parameters == (
        "charged_ptr_0", "state0_ptr_0", "param_ptr", "grad_last_ptr_0", "grad_x_ptr", "grad_state0_ptr_0"
    )
    clipped = kernel_plan(model_named("clipin").config(Sigmoid().spec))
    assert clipped.save_input and "x_ptr" in backward_source(clipped, "float32", full_variant(1)).parameters


def test_absent_gradients_leave_no_trace_in_the_source():
    plan = kernel_plan(model_named("lif").config(Sigmoid().spec))
    source = backward_source(plan, "float32", BackwardVariant(False, (True,), (False,), False, False)).source
    assert "grad_spike" not in source and "grad_seq" not in source and "grad_x_ptr +" not in source
    assert "grad_last_0" in source


def test_common_subexpressions_once_and_parameters_before_the_loop():
    plan = kernel_plan(model_named("plif").config(Sigmoid().spec))
    source = forward_source(plan, "float32", save=False, store_seqs=False).source
    before, loop = source.split("for step in range(T):")
    assert source.count("tl.sigmoid(var_p_w)") == 1 and "tl.sigmoid(var_p_w)" in before
    two = kernel_plan(SYNTHETIC_MODELS["twostate"].config(Sigmoid().spec))
    source = forward_source(two, "float32", save=False, store_seqs=False).source
    # c's charge is a subtree of v's charge: computed once per step
    assert source.count("tl.div_rn(var_u_c, 3.0)") == 1


def test_float32_literals_are_exact_and_ieee_operations_are_used():
    plan = kernel_plan(model_named("lif").config(Sigmoid(alpha=0.1).spec, tau=3.0, v_threshold=0.3))
    source = backward_source(plan, "float32", full_variant(1)).source
    for value in (0.1, 0.3):
        assert repr(struct.unpack("f", struct.pack("f", value))[0]) in source
    # torch's semantics on GPUs too: correctly rounded division, NaN-propagating extrema
    clip = kernel_plan(model_named("clipin").config(ATan().spec))
    text = forward_source(clip, "float32", False, False).source + backward_source(clip, "float32", full_variant(1)).source
    extrema = text.count("tl.minimum(") + text.count("tl.maximum(")
    assert extrema >= 2 and text.count("propagate_nan=tl.PropagateNan.ALL") == extrema
    assert "tl.div_rn(" in text and " / " not in text


@pytest.mark.parametrize("alpha", [2.0, 3.0, 7.0])
def test_powers_divide_and_take_roots_correctly_rounded(alpha):
    """QPseudoSpike's derivative is a power ``(1 + c z^2) ** -alpha``: its reciprocals and
    square roots are ``tl.div_rn`` and ``tl.sqrt_rn`` too (``/`` and ``tl.sqrt`` are
    approximate on NVIDIA GPUs)."""
    from snn.surrogate import QPseudoSpike

    plan = kernel_plan(model_named("lif").config(QPseudoSpike(alpha=alpha).spec))
    text = backward_source(plan, "float32", full_variant(1)).source
    assert " / " not in text and "tl.sqrt(" not in text
    assert "tl.div_rn(" in text
    x = var("x")
    assert render(x**-0.5, "triton") == "tl.div_rn(1.0, tl.sqrt_rn(x))"
    assert render(x**0.5 / x, "triton") == "tl.div_rn(tl.sqrt_rn(x), x)"


def test_bfloat16_results_are_rounded_with_integer_arithmetic():
    plan = kernel_plan(model_named("if").config(Sigmoid().spec))
    source = forward_source(plan, "bfloat16", save=False, store_seqs=True).source
    assert "0x7FFF" in source and ".to(tl.bfloat16)" in source
    assert "0x7FFF" not in forward_source(plan, "float16", save=False, store_seqs=True).source
    with pytest.raises(ValueError, match="storage"):
        forward_source(plan, "float64", save=False, store_seqs=False)


def test_variant_must_match_the_states():
    plan = kernel_plan(model_named("lif").config(Sigmoid().spec))
    with pytest.raises(ValueError, match="variant"):
        backward_source(plan, "float32", full_variant(2))


# -- the cache of generated modules ------------------------------------------------------------


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A fresh cache directory and empty in-memory caches (restored afterwards)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("SNN_TRITON_CACHE_DIR", str(directory))
    monkeypatch.setattr(codegen, "_kernels", {})
    for name in [n for n in sys.modules if n.startswith(source_cache.MODULE_PREFIX)]:
        monkeypatch.delitem(sys.modules, name)
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        if name.startswith(source_cache.MODULE_PREFIX):
            del sys.modules[name]


def test_generated_modules_are_cached_by_content(private_cache, triton_ready):
    config = model_named("lif").config(Sigmoid(alpha=2.0).spec)
    first = codegen.forward_kernel(config, "float32", False, False)
    assert codegen.forward_kernel(config, "float32", False, False) is first
    other = codegen.forward_kernel(model_named("lif").config(Sigmoid(alpha=3.0).spec), "float32", False, False)
    # the surrogate is not part of the forward pass: the same source, one module
    assert other[0] is first[0]
    codegen.backward_kernel(config, "float32", full_variant(1))
    files = sorted(p.name for p in private_cache.iterdir())
    assert len(files) == 2 and {f[:3] for f in files} == {"fw_", "bw_"} and all(f.endswith(".py") for f in files)
    assert oct(private_cache.stat().st_mode & 0o777) == oct(0o700)
    contents = {p.read_text() for p in private_cache.iterdir()}
    assert forward_source(kernel_plan(config), "float32", False, False).source in contents


def test_tampered_file_is_rewritten_before_import(private_cache, triton_ready):
    source = forward_source(kernel_plan(model_named("if").config(Sigmoid().spec)), "float32", False, False).source
    source_cache.load_generated(source, "fw")
    (path,) = private_cache.iterdir()
    path.write_text("raise SystemExit('tampered')\n")
    for name in [n for n in sys.modules if n.startswith(source_cache.MODULE_PREFIX)]:
        del sys.modules[name]
    module = source_cache.load_generated(source, "fw")
    assert path.read_text() == source and hasattr(module, "kernel")


def test_prefix_must_be_an_identifier(private_cache):
    with pytest.raises(ValueError, match="prefix"):
        source_cache.load_generated("x = 1\n", "../evil")


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_cache_directory_writable_by_others_is_refused(private_cache):
    private_cache.mkdir(mode=0o700)
    private_cache.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        source_cache.cache_dir()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_symlinked_cache_directory_is_refused(private_cache, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    private_cache.symlink_to(target)
    with pytest.raises(PermissionError, match="not a plain directory"):
        source_cache.cache_dir()


def test_kernels_are_launched_without_fused_multiply_adds():
    """Triton contracts a * b + c into one rounding by default; torch rounds twice, and a
    potential one rounding away from the threshold then spikes differently. The launch turns
    contraction off, and the compiled GPU code of PLIF's forward (``v - v k + x``) then has no
    fma instruction, where the default has one."""
    import os
    import subprocess
    import sys
    import textwrap

    import torch

    from snn_triton import ops

    launched = {}

    class FakeKernel:
        def __getitem__(self, grid):
            def run(*args, **options):
                launched.update(options)

            return run

    ops._launch(FakeKernel(), ("a",), {"a": None}, 3, 5, torch.device("cpu"))
    assert launched["enable_fp_fusion"] is False
    # compiled in a fresh process: the interpreter, once used here, patches triton.language
    script = textwrap.dedent(
        """
        import re, sys, triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from snn.models import kernel_plan
        from snn.plugins import get_registry
        from snn.surrogate import Sigmoid
        from snn_triton.codegen import forward_source
        from snn_triton.source_cache import load_generated

        config = get_registry().model("plif").config(Sigmoid().spec, False, v_reset=None, decay_input=False)
        generated = forward_source(kernel_plan(config), "float32", False, False)
        fn = load_generated(generated.source + "\\n# compiled for the fma check\\n", "fmacheck").kernel
        signature = {p: "*fp32" for p in generated.parameters} | {"T": "i32", "N": "i32", "BLOCK": "constexpr"}
        source = ASTSource(fn, signature, constexprs={"BLOCK": 128})
        target = GPUTarget("cuda", 90, 32)
        try:
            fused = triton.compile(source, target=target).asm["ptx"]
        except (RuntimeError, OSError, ImportError) as exc:
            print("cannot compile for a GPU here:", type(exc).__name__, exc)
            sys.exit(3)
        plain = triton.compile(source, target=target, options={"enable_fp_fusion": False}).asm["ptx"]
        print("fused", "fma.rn.f32" in fused, "plain", "fma." in plain)
        """
    )
    environment = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=environment)
    if done.returncode == 3:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stderr[-3000:]
    # the default would contract a product and a sum; the launch option keeps them apart
    assert done.stdout.split()[-4:] == ["fused", "True", "plain", "False"], done.stdout
