"""The generated C: one source of math (the plan's expressions, rendered by snn.expr), and loops
the compiler vectorises."""

from __future__ import annotations

import re
import subprocess

import pytest
from snn_cpp_test_helpers import TWO_STATE_MODEL

from snn import surrogate
from snn.expr import render
from snn.models import kernel_plan
from snn.plugins import get_registry
from snn_cpp import build, codegen


def _as_generated(text: str) -> str:
    """A rendered expression with the functions the kernels replace (documented in codegen)."""
    replaced = {"fminf": "snn_min", "fmaxf": "snn_max", "fmin": "snn_min", "fmax": "snn_max", "expf": "snn_expf"}
    return re.sub(r"\b(fminf|fmaxf|fmin|fmax|expf)\(", lambda m: replaced[m.group(1)] + "(", text)


def _plans():
    registry = get_registry()
    configs = [registry.model(name).config(surrogate.Sigmoid().spec, False) for name in sorted(registry.models)]
    configs.append(TWO_STATE_MODEL.config(surrogate.Sigmoid().spec, True, v_reset=None))
    return [kernel_plan(c) for c in configs]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_source_renders_the_plan(dtype):
    dialect = codegen.DIALECTS[dtype][0]
    for plan in _plans():
        source = codegen.generate_source(plan, dtype)
        names = {"x": "xv", "s": "sv", "z": "zv"}
        names |= {f"u_{n}": f"u{i}" for i, n in enumerate(plan.states)}
        names |= {f"h_{n}": f"h{i}" for i, n in enumerate(plan.states)}
        names |= {f"p_{n}": f"p{k}" for k, n in enumerate(plan.learnables)}
        for i, expr in enumerate(plan.charge):
            assert f"const real_t h{i} = {_as_generated(render(expr, dialect, names))};" in source
        fire = plan.fire_index
        assert f"(h{fire} >= THRESHOLD)" in source
        sg = _as_generated(render(plan.surrogate, dialect, names))
        assert f"b_sg[k] = {sg};" in source
        assert codegen.embedded_id(source) == codegen.source_id(source.rsplit("SNN_EXPORT const char", 1)[0])


def test_minimum_and_maximum_propagate_nan():
    plan = kernel_plan(get_registry().model("lif").config(surrogate.PiecewiseQuadratic().spec, False))
    source = codegen.generate_source(plan, "float32")
    assert "snn_max(" in source and not re.search(r"\bfmaxf?\(", source.split("SNN_INLINE void snn_forward_block")[1])


def test_unknown_dtype():
    with pytest.raises(ValueError, match="dtype"):
        codegen.generate_source(_plans()[0], "float16")


@pytest.mark.skipif(build.probe() is not None, reason="no C compiler")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hot_loops_are_vectorised(tmp_path, dtype):
    """GCC's vectorisation report lists the innermost loops of the forward and backward blocks."""
    chain = build.toolchain()
    macros = subprocess.run([*chain.command, "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True).stdout
    if "__GNUC__" not in macros or "__clang__" in macros:
        pytest.skip(f"the vectorisation report is read from GCC, the compiler here is {chain.version}")
    for plan in _plans():
        source = codegen.generate_source(plan, dtype)
        path = tmp_path / "kernel.c"
        path.write_text(source)
        flags = [f for f in chain.flags if f != "-shared"]
        done = subprocess.run([*chain.command, *flags, "-c", "-fopt-info-vec-optimized", "-o", str(tmp_path / "k.o"),
                               str(path)], capture_output=True, text=True, check=True)
        vectorised = {int(m.group(1)) for m in re.finditer(r"kernel\.c:(\d+):\d+: optimized: loop vectorized", done.stderr)}
        lines = source.splitlines()
        body_starts = ("const real_t u0 = st0[i];", "const real_t h")
        hot = [number for number, line in enumerate(lines, start=1)
               if line.strip() == "for (int64_t k = 0; k < cl; ++k) {"
               and (lines[number].strip() == "const int64_t i = c + k;"
                    and lines[number + 1].strip().startswith(body_starts)
                    or lines[number].strip().startswith("const real_t zv = "))]
        # the forward's loop, the backward's and the backward's surrogate loop, at least
        assert len(hot) >= 3, "the forward and backward loops were not found in the source"
        missing = [n for n in hot if n not in vectorised]
        assert not missing, f"{plan.model.name}: loops at lines {missing} not vectorised:\n{done.stderr[-2000:]}"
