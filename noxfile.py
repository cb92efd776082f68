"""Task runner for snn: ``nox -s demo``, ``bench``, ``docs``, ``lint``, ``wheels``; ``gpu`` on a GPU machine.

Sessions that install packages use pip-based virtualenvs and the pins of
``.ci/constraints.txt`` (override with ``SNN_CONSTRAINTS``). ``wheels`` builds the five
distributions into ``dist/``, after which ``pip install --find-links dist "snn-core[all]"``
installs them like published packages (``tox -e pkg`` tests exactly that). The ``gpu`` session
is off by default and runs in the current environment (GPU machines often have no package
index): it expects snn-core, snn-triton and snn-cupy to be importable there already.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = os.environ.get("SNN_CONSTRAINTS", str(ROOT / ".ci" / "constraints.txt"))

nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["demo", "lint"]

#: The distributions of the repository, as ``nox -s wheels`` and ``tox -e pkg`` build them.
DISTRIBUTIONS = (
    "packages/snn-core", "packages/snn-triton", "packages/snn-cupy", "packages/snn-cpp", "packages/snn-online",
)


def _install(session: nox.Session, *specs: str) -> None:
    session.install("-c", CONSTRAINTS, *specs)


@nox.session
def demo(session: nox.Session) -> None:
    """Train the default spiking network on the digits data set (the main job)."""
    _install(session, "-e", "packages/snn-core[demo]", "-e", "packages/snn-online")
    session.run("snn", "train", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark the installed backends on this machine (`snn bench`)."""
    _install(session, "-e", "packages/snn-core[demo]")
    session.run("snn", "bench", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    # the test extra: snn.testing (documented API) imports pytest
    _install(session, "-e", "packages/snn-core[demo,test]", "-e", "packages/snn-online", "sphinx>=7")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks: ruff, then mypy over every distribution (as ``tox -e lint``)."""
    _install(
        session, "ruff>=0.6", "mypy==2.4.1", "pytest>=8",
        "-e", "packages/snn-core[demo]", "-e", "packages/snn-online", "-e", "examples/snn-example-plugin",
    )
    session.run("ruff", "check", "packages", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("mypy")
    session.run("pytest", "packages/snn-core/tests/test_mypy_plugin.py", "-q")


@nox.session(default=False)
def wheels(session: nox.Session) -> None:
    """Build the wheels (and sdists) of snn-core, snn-triton, snn-cupy, snn-cpp and snn-online into dist/.

    Each wheel is built from its sdist, so nothing left in a source folder (an old ``build/``)
    ends up in it. Then, in any virtualenv: ``pip install --find-links dist "snn-core[all]"``
    (or ``"snn-core[online]"`` ...; add ``-c .ci/constraints.txt`` for the pinned CPU torch).
    """
    session.install("build>=1")
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    for old in dist.glob("snn_*"):
        old.unlink()
    for folder in DISTRIBUTIONS:
        session.run("python", "-m", "build", "--outdir", str(dist), folder)
    session.log(f'built into {dist}; install with: pip install --find-links {dist} "snn-core[all]"')


@nox.session(venv_backend="none", default=False)
def gpu(session: nox.Session) -> None:
    """GPU checks: conformance of every installed kernel backend, then the benchmark table.

    Runs in the current environment. Finishes in a few minutes on one H200.
    """
    env = {"PYTHONUNBUFFERED": "1"}
    session.run(
        "python", "-m", "pytest", "-m", "gpu", "-q",
        "packages/snn-core/tests", "packages/snn-triton/tests", "packages/snn-cupy/tests",
        env=env,
    )
    session.run("python", "benchmarks/gpu_bench.py", *session.posargs, env=env)
