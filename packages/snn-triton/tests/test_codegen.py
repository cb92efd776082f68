"""Surrogate derivatives rendered to Triton source, cached as private generated modules."""

from __future__ import annotations

import os
import struct
import sys

import pytest

from snn.kernels import SurrogateSpec
from snn.surrogate import CLOSED_FORM_SURROGATES, SURROGATES, DeterministicPass, Sigmoid
from snn_triton import codegen


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A fresh cache directory and empty in-memory caches (restored afterwards)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("SNN_TRITON_CACHE_DIR", str(directory))
    monkeypatch.setattr(codegen, "_functions", {})
    for name in [n for n in sys.modules if n.startswith("snn_triton_generated")]:
        monkeypatch.delitem(sys.modules, name)
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        if name.startswith("snn_triton_generated"):
            del sys.modules[name]


def test_source_renders_the_one_expression_with_exact_float32_literals():
    source = codegen.derivative_source(Sigmoid(alpha=0.1).spec)
    alpha32 = struct.unpack("f", struct.pack("f", 0.1))[0]
    assert "@triton.jit\ndef surrogate_derivative(x):\n    return " in source
    assert repr(alpha32) in source
    assert "tl.sigmoid(" in source
    compile(source, "<generated>", "exec")


def test_constant_derivative_is_a_tensor_of_x_shape():
    source = codegen.derivative_source(DeterministicPass().spec)
    assert "return tl.zeros_like(x) + 1.0" in source


@pytest.mark.parametrize("name", CLOSED_FORM_SURROGATES)
def test_every_closed_form_surrogate_renders(name):
    compile(codegen.derivative_source(SURROGATES[name]().spec), name, "exec")


def test_unrenderable_parameter_names_the_surrogate():
    with pytest.raises(ValueError, match="Sigmoid"):
        codegen.derivative_source(SurrogateSpec("Sigmoid", (("alpha", 1e39),)))


def test_surrogate_without_closed_form_is_refused():
    with pytest.raises(ValueError, match="PoissonPass"):
        codegen.derivative_source(SurrogateSpec("PoissonPass", ()))


def test_generated_module_is_cached_by_content(private_cache):
    first = codegen.surrogate_derivative_function(Sigmoid(alpha=2.0).spec)
    assert codegen.surrogate_derivative_function(Sigmoid(alpha=2.0).spec) is first
    other = codegen.surrogate_derivative_function(Sigmoid(alpha=3.0).spec)
    assert other is not first
    files = sorted(p.name for p in private_cache.iterdir())
    assert len(files) == 2 and all(f.startswith("sg_") and f.endswith(".py") for f in files)
    assert oct(private_cache.stat().st_mode & 0o777) == oct(0o700)
    contents = {p.read_text() for p in private_cache.iterdir()}
    assert codegen.derivative_source(Sigmoid(alpha=2.0).spec) in contents


def test_tampered_file_is_rewritten_before_import(private_cache):
    spec = Sigmoid(alpha=5.0).spec
    codegen.surrogate_derivative_function(spec)
    (path,) = private_cache.iterdir()
    path.write_text("raise SystemExit('tampered')\n")
    codegen._functions.clear()
    for name in [n for n in sys.modules if n.startswith("snn_triton_generated")]:
        del sys.modules[name]
    codegen.surrogate_derivative_function(spec)
    assert path.read_text() == codegen.derivative_source(spec)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_cache_directory_writable_by_others_is_refused(private_cache):
    private_cache.mkdir(mode=0o700)
    private_cache.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        codegen.cache_dir()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_symlinked_cache_directory_is_refused(private_cache, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    private_cache.symlink_to(target)
    with pytest.raises(PermissionError, match="not a plain directory"):
        codegen.cache_dir()
