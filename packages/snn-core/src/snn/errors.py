"""Typed errors raised by snn.

Every error raised on purpose by snn derives from :class:`SNNError`, so callers can catch the
whole family at once. Bad arguments are reported with the built-in :class:`ValueError` and
:class:`TypeError`, always naming the argument, what was expected and what came.

Errors about a backend or online learner that a first-party plugin would provide carry the
command that installs it, from a package index and from a checkout of the snn repository
(:func:`install_hint`, :data:`FIRST_PARTY_PLUGINS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "SNNError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "BackendProbeError",
    "UnsupportedOperationError",
    "KernelContractError",
    "DuplicateRegistrationError",
    "OnlineLearnerNotFoundError",
    "RegistryEntryNotFoundError",
    "NIRConversionError",
    "StepModeWarning",
    "FirstPartyPlugin",
    "FIRST_PARTY_PLUGINS",
    "install_hint",
]


@dataclass(frozen=True)
class FirstPartyPlugin:
    """A plugin distribution of the snn repository and the commands that install it.

    Attributes:
        name: the entry-point name of its plugin.
        distribution: the distribution, e.g. ``"snn-triton"``.
        backends: the backend names it registers.
        learners: the online-learner names it registers.
        from_index: the command from a package index, e.g. ``pip install "snn-core[triton]"``.
        from_checkout: the command from a checkout of the snn repository, run at its root.
            ``snn-core``'s extras pin the sibling distributions (``snn-triton==0.1.0``), which
            pip finds on an index or in ``--find-links dist`` after ``nox -s wheels``, but not
            in the checkout's source folders; an editable install of the folder works anywhere.
    """

    name: str
    distribution: str
    backends: tuple[str, ...]
    learners: tuple[str, ...]
    from_index: str
    from_checkout: str

    @property
    def provides(self) -> tuple[str, ...]:
        """Every backend and online-learner name it registers."""
        return self.backends + self.learners

    def hint(self) -> str:
        """Both commands in one line, as the error messages and ``snn doctor`` print them."""
        return f"{self.from_index} (from a checkout of the snn repository, at its root: {self.from_checkout})"


#: The first-party plugins, by entry-point name.
FIRST_PARTY_PLUGINS: dict[str, FirstPartyPlugin] = {
    plugin.name: plugin
    for plugin in (
        FirstPartyPlugin(
            "triton", "snn-triton", ("triton",), (),
            'pip install "snn-core[triton]"', "pip install -e packages/snn-triton",
        ),
        # snn-core[cupy] brings snn-cupy without CuPy, whose wheel depends on the CUDA version:
        # the extra of snn-cupy picks it (cuda13 for CUDA 13 drivers).
        FirstPartyPlugin(
            "cupy", "snn-cupy", ("cupy",), (),
            'pip install "snn-cupy[cuda12]"', 'pip install -e "packages/snn-cupy[cuda12]"',
        ),
        FirstPartyPlugin(
            "cpp", "snn-cpp", ("cpp",), (),
            'pip install "snn-core[cpp]"', "pip install -e packages/snn-cpp",
        ),
        FirstPartyPlugin(
            "online", "snn-online", (), ("ottt", "sltt", "fptt"),
            'pip install "snn-core[online]"', "pip install -e packages/snn-online",
        ),
    )
}


def install_hint(name: str) -> str | None:
    """How to install the first-party plugin that provides ``name``.

    Args:
        name: a plugin name (``"online"``) or a backend or online-learner name it registers
            (``"triton"``, ``"ottt"``).

    Returns:
        ``'<command from an index> (from a checkout of the snn repository, at its root:
        <command>)'``, or ``None`` when no first-party plugin provides ``name``.
    """
    plugin = FIRST_PARTY_PLUGINS.get(name)
    if plugin is None:
        plugin = next((p for p in FIRST_PARTY_PLUGINS.values() if name in p.provides), None)
    return None if plugin is None else plugin.hint()


#: The install hint of every first-party name (see :func:`install_hint`).
INSTALL_HINTS: dict[str, str] = {
    name: plugin.hint()
    for plugin in FIRST_PARTY_PLUGINS.values()
    for name in dict.fromkeys((plugin.name, *plugin.provides))
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
        install = install_hint(name)
        parts = [p for p in (f"install it with: {install}" if install else "", hint) if p]
        super().__init__("backend", name, known, ". ".join(parts))


class OnlineLearnerNotFoundError(RegistryEntryNotFoundError):
    """No installed plugin provides an online learner of that name."""

    def __init__(self, name: str, known: Iterable[str], hint: str = "") -> None:
        install = install_hint(name) or install_hint("online")
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


class KernelContractError(SNNError, RuntimeError):
    """A backend's kernel returned something the kernel contract (:mod:`snn.kernels`) does not allow.

    Raised where the result is used, before any state of the neuron changes, so that a plugin's
    bug surfaces at the call that caused it (not as a wrong shape one call later).

    Args:
        backend: the backend whose kernel it was.
        mode: the kernel mode, ``"multi_step"`` or ``"single_step"``.
        problem: what was wrong, naming the part of the result and what was expected.
    """

    def __init__(self, backend: str, mode: str, problem: str) -> None:
        self.backend = backend
        self.mode = mode
        self.problem = problem
        super().__init__(f"backend {backend!r}: its {mode} kernel broke the kernel contract: {problem}")


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


class NIRConversionError(SNNError, ValueError):
    """A network or NIR graph holds something the other side cannot express exactly.

    Raised by :func:`snn.nir.export_to_nir` for a module NIR has no node for (or a setting NIR
    cannot state, e.g. a soft reset), and by :func:`snn.nir.import_from_nir` for a NIR node
    snn has no module for (or parameters no snn module reproduces). Never raised for a file
    that is not valid NIR; that is a plain :class:`ValueError`.

    Args:
        where: the module's qualified name or the NIR node's name, with its type.
        reason: why it cannot be converted, and what would work instead when there is a way.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")
class StepModeWarning(UserWarning):
    """A network in step mode ``'m'`` holds plain torch modules that will misread ``[T, N, ...]``.

    Raised as a warning by :func:`snn.functional.set_step_mode`; the message names each module
    and its step-mode-aware replacement. Silence it with :mod:`warnings` filters once the
    modules are known to see per-step input (e.g. inside a custom module that loops over time).
    """
