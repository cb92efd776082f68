"""Typed errors raised by snn.

Every error raised on purpose by snn derives from :class:`SNNError`, so callers can catch the
whole family at once. Bad arguments are reported with the built-in :class:`ValueError` and
:class:`TypeError`, always naming the argument, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "SNNError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "BackendProbeError",
    "UnsupportedOperationError",
    "DuplicateRegistrationError",
    "OnlineLearnerNotFoundError",
    "RegistryEntryNotFoundError",
]

#: Which extra of ``snn-core`` brings each first-party plugin.
INSTALL_HINTS: dict[str, str] = {
    "triton": 'pip install "snn-core[triton]"',
    "cupy": 'pip install "snn-core[cupy]"',
    "online": 'pip install "snn-core[online]"',
    "ottt": 'pip install "snn-core[online]"',
    "sltt": 'pip install "snn-core[online]"',
    "fptt": 'pip install "snn-core[online]"',
}


def _names(names: Iterable[str]) -> str:
    listed = sorted(names)
    return ", ".join(repr(n) for n in listed) if listed else "(none)"


class SNNError(Exception):
    """Base class of every error snn raises on purpose."""


class RegistryEntryNotFoundError(SNNError, LookupError):
    """A name was looked up in the registry and no plugin provides it.

    Args:
        what: the kind of entry, e.g. ``"forward strategy"``.
        name: the name that was asked for.
        known: the names that are registered.
        hint: an optional extra sentence (install command, recorded plugin failures).
    """

    def __init__(self, what: str, name: str, known: Iterable[str], hint: str = "") -> None:
        self.what = what
        self.name = name
        self.known = tuple(sorted(known))
        message = f"unknown {what} {name!r}; known: {_names(self.known)}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class BackendNotFoundError(RegistryEntryNotFoundError):
    """No installed plugin provides a backend of that name."""

    def __init__(self, name: str, known: Iterable[str], hint: str = "") -> None:
        install = INSTALL_HINTS.get(name)
        parts = [p for p in (f"install it with: {install}" if install else "", hint) if p]
        super().__init__("backend", name, known, ". ".join(parts))


class OnlineLearnerNotFoundError(RegistryEntryNotFoundError):
    """No installed plugin provides an online learner of that name."""

    def __init__(self, name: str, known: Iterable[str], hint: str = "") -> None:
        install = INSTALL_HINTS.get(name, 'pip install "snn-core[online]"')
        parts = [f"online learners come from plugins; install them with: {install}"]
        if hint:
            parts.append(hint)
        super().__init__("online learner", name, known, ". ".join(parts))


class BackendUnavailableError(SNNError, RuntimeError):
    """The backend is installed but cannot run here (its probe gave a reason).

    The original exception, when there is one, is chained as ``__cause__``.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"backend {name!r} is installed but cannot run here: {reason}")


class BackendProbeError(SNNError, RuntimeError):
    """Raised by a backend's probe when its runtime is installed but broken here.

    The message is the reason shown to users (``snn doctor``, :class:`BackendUnavailableError`);
    chain the original exception (``raise BackendProbeError("...") from exc``) and the registry
    chains it to the :class:`BackendUnavailableError` it raises.
    """


class UnsupportedOperationError(SNNError, NotImplementedError):
    """A backend lacks a neuron kind, step mode, dtype, device or surrogate.

    Args:
        backend: the backend that was asked.
        what: what it lacks, e.g. ``"surrogate 'Rect'"``.
        alternatives: the backends that do serve it.
    """

    def __init__(self, backend: str, what: str, alternatives: Iterable[str] = ()) -> None:
        self.backend = backend
        self.what = what
        self.alternatives = tuple(sorted(alternatives))
        message = f"backend {backend!r} does not support {what}"
        if self.alternatives:
            message += f"; backends that do: {_names(self.alternatives)}"
        else:
            message += "; no installed backend does"
        super().__init__(message)


class DuplicateRegistrationError(SNNError, ValueError):
    """Two plugins registered the same name in the same registry table."""

    def __init__(self, what: str, name: str, first_plugin: str, second_plugin: str) -> None:
        self.what = what
        self.name = name
        self.first_plugin = first_plugin
        self.second_plugin = second_plugin
        super().__init__(
            f"{what} {name!r} is registered by plugin {first_plugin!r} and again by "
            f"plugin {second_plugin!r}; the second registration was refused"
        )
