"""Where the Triton kernels can run: Triton installed, a CUDA device, or the interpreter.

Nothing here imports Triton at module import; :func:`probe` imports it to check that it is
installed.
"""

from __future__ import annotations

import os

__all__ = ["INSTALL_HINT", "interpreter_enabled", "probe"]

#: The command that installs this backend.
INSTALL_HINT = 'pip install "snn-core[triton]"'

_TRUE = {"1", "true", "yes", "on"}


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's CPU interpreter.

    Triton reads the variable when a kernel is decorated, so it must be set before
    :mod:`snn_triton.triton_kernels` is imported (the package's test ``conftest.py`` does that).
    """
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def probe() -> str | None:
    """``None`` when the Triton kernels can run here, else the reason they cannot.

    Returns:
        ``None`` with Triton installed and either a CUDA device or ``TRITON_INTERPRET=1``;
        otherwise a sentence saying what is missing and how to get it.
    """
    try:
        import triton  # noqa: F401
    except ImportError:
        return f"triton is not installed: {INSTALL_HINT}"
    except Exception as exc:  # a broken installation must not break the caller
        return f"triton failed to import ({type(exc).__name__}: {exc}); reinstall it: {INSTALL_HINT}"
    if interpreter_enabled():
        return None
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (TRITON_INTERPRET=1 runs the kernels on CPU, for tests only)"
    return None
