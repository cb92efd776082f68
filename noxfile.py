"""Task runner for snn: ``nox -s demo``, ``bench``, ``docs``, ``lint``; ``gpu`` on a GPU machine.

Sessions that install packages use pip-based virtualenvs and the pins of
``.ci/constraints.txt`` (override with ``SNN_CONSTRAINTS``). The ``gpu`` session is off by
default and runs in the current environment (GPU machines often have no package index): it
expects snn-core, snn-triton and snn-cupy to be importable there already.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = os.environ.get("SNN_CONSTRAINTS", str(ROOT / ".ci" / "constraints.txt"))

nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["demo", "lint"]


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
    _install(session, "-e", "packages/snn-core[demo]", "-e", "packages/snn-online", "sphinx>=7")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "packages", "tests", "examples", "benchmarks", "noxfile.py")


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
