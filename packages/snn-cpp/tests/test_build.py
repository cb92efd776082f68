"""The compiler, the on-disk cache and the probe.

- a second process loads the kernels from the cache without compiling (a wrapper compiler
  counts compilations);
- concurrent processes on an empty cache compile each library once and all succeed;
- a corrupted cache entry (truncated, overwritten, or another library under its name) is
  rebuilt, not crashed on;
- without a compiler (``SNN_CPP_CC`` / ``CC`` naming a missing program, or a compiler that
  cannot build) the probe says what is missing and how to install it, the backend is
  unavailable with that reason, and ``backend="auto"`` and the torch backend keep working.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from snn import plugins, surrogate
from snn.errors import BackendUnavailableError
from snn_cpp import build, ops

REAL_COMPILER = build.compiler_command()[0] if build.probe() is None else None
needs_compiler = pytest.mark.skipif(REAL_COMPILER is None, reason=f"cpp backend unavailable: {build.probe()}")

# a run of one configuration, printing a checksum of its outputs and gradients
SCRIPT = textwrap.dedent(
    """
    import torch
    from snn.plugins import get_registry
    from snn.surrogate import ATan
    from snn_cpp.kernel import multi_step

    config = get_registry().model("plif").config(ATan().spec, False, v_reset=-0.2)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(7, 300, generator=gen, dtype=torch.float64) * 1.5).requires_grad_()
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    spikes, (v,), _ = multi_step(x, (torch.zeros(300, dtype=torch.float64),), config, learnables=(w,))
    (spikes.sum() + v.sum()).backward()
    print(repr((spikes.sum().item(), v.sum().item(), x.grad.sum().item(), w.grad.item())))
    """
)


def _wrapper_compiler(directory: Path) -> tuple[Path, Path]:
    """A compiler that logs the source file of every compilation, then runs the real one."""
    log = directory / "compilations.log"
    script = directory / "counting-cc"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do case "$arg" in *.c) echo "$arg" >> "' + str(log) + '";; esac; done\n'
        f'exec "{REAL_COMPILER}" "$@"\n'
    )
    script.chmod(0o755)
    return script, log


def _compilations(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _environment(cache: Path, compiler: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({build.CACHE_ENV: str(cache), build.COMPILER_ENV: str(compiler), "OMP_NUM_THREADS": "1"})
    env.pop("CC", None)
    return env


def _run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private cache directory and fresh in-process caches (restored afterwards)."""
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(ops, "_kernels", {})
    build.reset()
    yield tmp_path
    build.reset()


@needs_compiler
@pytest.mark.slow
def test_second_process_loads_from_the_cache(tmp_path):
    compiler, log = _wrapper_compiler(tmp_path)
    env = _environment(tmp_path / "cache", compiler)
    first = _run_script(env)
    assert first.returncode == 0, first.stderr
    built = _compilations(log)
    assert len(built) >= 2  # the probe's test library and the configuration's kernels
    second = _run_script(env)
    assert second.returncode == 0, second.stderr
    assert _compilations(log) == built, "the second process compiled again"
    assert second.stdout == first.stdout


@needs_compiler
@pytest.mark.slow
def test_concurrent_processes_compile_each_library_once(tmp_path):
    compiler, log = _wrapper_compiler(tmp_path)
    env = _environment(tmp_path / "cache", compiler)
    runs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [run.communicate(timeout=600) + (run.returncode,) for run in runs]
    for stdout, stderr, code in results:
        assert code == 0, stderr
        assert stdout == results[0][0]
    built = _compilations(log)
    assert len(built) == len(set(built)), f"a library was compiled twice: {built}"
    cache = tmp_path / "cache"
    for library in cache.glob("*.so"):
        checksum = (cache / (library.name + ".sha256")).read_text().strip()
        assert checksum == build._sha256(library)
    assert not list(cache.glob("*.tmp*")), "temporary files left behind"


def _kernel_library(cache: Path) -> Path:
    (found,) = [p for p in cache.glob("*.so") if "snn_forward" in p.with_suffix(".c").read_text()]
    return found


def _run_in_process(config) -> tuple[torch.Tensor, ...]:
    from snn_cpp.kernel import multi_step

    x = torch.linspace(-1.0, 2.0, 60).reshape(3, 20)
    spikes, (v,), _ = multi_step(x, (torch.zeros(20),), config)
    return spikes, v


@needs_compiler
@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_library", "checksum_missing"])
def test_corrupted_entry_is_rebuilt(isolated, monkeypatch, damage):
    compiler, log = _wrapper_compiler(isolated)
    monkeypatch.setenv(build.COMPILER_ENV, str(compiler))
    config = plugins.get_registry().model("lif").config(surrogate.Sigmoid().spec, False, v_reset=-0.1)
    want = _run_in_process(config)
    cache = isolated / "cache"
    library = _kernel_library(cache)
    sums = library.with_name(library.name + ".sha256")
    data = library.read_bytes()
    # damage a new file under the name: the old inode stays mapped in this process (rewriting a
    # library in place while it is loaded would crash any program that uses it)
    library.unlink()
    if damage == "truncated":
        library.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        library.write_bytes(b"\x7fELF" + bytes(range(256)) * (len(data) // 256))
    elif damage == "other_library":  # a valid library that is not this one, with a valid checksum
        probe = next(p for p in cache.glob("*.so") if p != library)
        shutil.copyfile(probe, library)
        sums.write_text(build._sha256(library) + "\n")
    else:
        library.write_bytes(data)
        sums.unlink()
    before = len(_compilations(log))
    build.reset()
    monkeypatch.setattr(ops, "_kernels", {})
    got = _run_in_process(config)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert len(_compilations(log)) == before + 1, "the damaged library was not rebuilt exactly once"
    assert sums.read_text().strip() == build._sha256(library)


@needs_compiler
def test_build_error_carries_the_diagnostics(isolated):
    with pytest.raises(build.KernelBuildError, match="failed") as info:
        build.load_library("this is not C;\n", None)
    assert "error" in str(info.value)


def test_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "explicit"))
    assert build.cache_dir() == tmp_path / "explicit" and (tmp_path / "explicit").is_dir()
    monkeypatch.delenv(build.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_dir() == tmp_path / "xdg" / "snn-cpp"


@pytest.fixture
def registry_without_compiler(monkeypatch):
    """The plugin registry rebuilt while ``SNN_CPP_CC`` names a compiler that does not exist."""
    monkeypatch.setenv(build.COMPILER_ENV, "/nonexistent/bin/snn-test-cc")
    build.reset()
    plugins.reset()
    yield plugins.get_registry()
    monkeypatch.undo()
    build.reset()
    plugins.reset()


def test_probe_without_a_compiler(registry_without_compiler):
    registry = registry_without_compiler
    reason = build.probe()
    assert reason is not None
    assert "snn-test-cc" in reason and "not found" in reason and "apt-get install gcc" in reason
    info = registry.backend("cpp")
    assert info.unavailable_reason() == reason
    with pytest.raises(BackendUnavailableError, match="apt-get install gcc"):
        registry.kernel("cpp", "multi_step")
    # nothing else breaks: auto falls back to torch, the torch backend runs
    from snn import neuron

    config = registry.model("lif").config(surrogate.Sigmoid().spec, False)
    assert registry.auto_backend(config, "multi_step", "cpu", torch.float32) == "torch"
    lif = neuron.LIFNode(step_mode="m", backend="auto")
    assert lif(torch.full((3, 2), 1.5)).shape == (3, 2)
    with pytest.raises(BackendUnavailableError):
        neuron.LIFNode(step_mode="m", backend="cpp")(torch.ones(2, 2))


def test_cc_naming_a_missing_program(monkeypatch):
    monkeypatch.delenv(build.COMPILER_ENV, raising=False)
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    build.reset()
    try:
        reason = build.probe()
        assert reason is not None and "$CC" in reason and "not found" in reason
        with pytest.raises(build.CompilerNotFoundError):
            build.toolchain()
    finally:
        monkeypatch.undo()
        build.reset()


def test_compiler_that_cannot_build(tmp_path, monkeypatch):
    fake = tmp_path / "fake-cc"
    fake.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "fake-cc 1.0"; exit 0; fi\necho "fake-cc: cannot" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv(build.COMPILER_ENV, str(fake))
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))
    build.reset()
    try:
        reason = build.probe()
        assert reason is not None
        assert "fake-cc 1.0" in reason and "cannot build a shared library" in reason and "apt-get install gcc" in reason
    finally:
        monkeypatch.undo()
        build.reset()


def test_not_installed_names_the_extra(monkeypatch):
    from snn.errors import BackendNotFoundError

    monkeypatch.setenv("SNN_DISABLED_PLUGINS", "cpp")
    plugins.reset()
    try:
        with pytest.raises(BackendNotFoundError, match=r'pip install "snn-core\[cpp\]"'):
            plugins.get_registry().backend("cpp")
    finally:
        monkeypatch.undo()
        plugins.reset()


def test_an_unusable_cache_is_named_as_such_not_as_a_compiler_failure(tmp_path, monkeypatch):
    """A cache path that is a file: the probe says the cache is unusable and names the variable;
    pointing the variable at a good directory then works in the same process."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(build.CACHE_ENV, str(blocker))
    build.reset()
    with pytest.raises(build.KernelCacheError, match=f"kernel cache .*cannot be created.*{build.CACHE_ENV}"):
        build.cache_dir()
    reason = build.probe()
    assert reason is not None and "kernel cache" in reason and "C compiler" not in reason
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "good"))
    if REAL_COMPILER is not None:
        assert build.probe() is None
    build.reset()


def test_a_world_writable_cache_is_refused_and_a_group_writable_one_warned_about(tmp_path, monkeypatch, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(build.CACHE_ENV, str(shared))
    with pytest.raises(build.KernelCacheError, match="can be written by every user"):
        build.cache_dir()
    shared.chmod(0o775)  # what mkdir gives under umask 002 (Debian, Ubuntu, Fedora defaults)
    with caplog.at_level("WARNING", logger="snn"):
        assert build.cache_dir() == shared
    assert "writable by its group" in caplog.text
    shared.chmod(0o700)
    assert build.cache_dir() == shared


@needs_compiler
def test_a_cache_that_cannot_be_written_is_a_typed_error(isolated):
    """The lock file of a new library cannot be opened (here: a directory stands in its place)."""
    source = "int snn_cache_test(void) { return 7; }\n"
    directory = build.cache_dir()
    chain = build.toolchain()
    import hashlib

    name = f"{hashlib.sha256(source.encode()).hexdigest()[:32]}-{chain.ident}"
    (directory / f"{name}.lock").mkdir()
    with pytest.raises(build.KernelCacheError, match=f"is not writable .*{build.CACHE_ENV}"):
        build.load_library(source, None)


def test_build_errors_are_snn_errors():
    from snn.errors import SNNError

    for error in (build.CompilerNotFoundError, build.KernelBuildError, build.KernelCacheError):
        assert issubclass(error, SNNError) and issubclass(error, RuntimeError)


@needs_compiler
def test_a_write_that_fails_midway_is_a_typed_error(isolated, monkeypatch):
    """A full disk (ENOSPC from writing the source) is a KernelCacheError naming the file and the
    variable, not a bare OSError."""
    import errno

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build, "_write_atomic", full_disk)
    with pytest.raises(build.KernelCacheError, match=f"writing the kernel .*No space left on device.*{build.CACHE_ENV}"):
        build.load_library("int snn_full_disk_test(void) { return 3; }\n", None)


def test_a_malformed_compiler_variable_is_named(monkeypatch):
    monkeypatch.setenv(build.COMPILER_ENV, 'gcc "')
    build.reset()
    try:
        with pytest.raises(build.CompilerNotFoundError, match=rf"\${build.COMPILER_ENV}: expected a compiler command .*got 'gcc \"'"):
            build.compiler_command()
        reason = build.probe()
        assert reason is not None and build.COMPILER_ENV in reason
    finally:
        monkeypatch.undo()
        build.reset()


@needs_compiler
def test_a_library_that_cannot_load_is_a_build_error(isolated, monkeypatch):
    """dlopen failing on the fresh library (an undefined symbol, a noexec mount) is not a cache
    write failure."""

    def cannot_load(path, checksum, ident):
        raise OSError(f"{path}: undefined symbol: snn_missing")

    chain = build.toolchain()  # probed before the loader is broken
    monkeypatch.setattr(build, "_open_checked", cannot_load)
    with pytest.raises(build.KernelBuildError, match="cannot be loaded: .*undefined symbol"):
        build.load_library("int snn_load_failure_test(void) { return 5; }\n", None, chain)
