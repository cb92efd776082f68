"""What export and import share: the lazy ``nir`` import, argument checks, the ``snn`` metadata."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from snn.surrogate import SURROGATES, SurrogateFunctionBase

#: Relative tolerance for "equal" NIR parameters: the spacing of float32, which most writers store.
RTOL = 1e-6

#: The NIR key under which snn keeps what NIR's dynamics do not describe (surrogate, reset detach).
METADATA_KEY = "snn"

INSTALL_HINT = 'pip install "snn-core[nir]"'


def require_nir() -> ModuleType:
    """The ``nir`` package, or an :class:`ImportError` that says how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise ImportError(f"snn.nir needs the 'nir' package; install it with: {INSTALL_HINT}") from exc
    return nir


def check_dt(function: str, dt: Any) -> float:
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise TypeError(f"{function}: dt: expected a positive real number (seconds per step), got {type(dt).__name__}")
    value = float(dt)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{function}: dt: expected a positive finite number (seconds per step), got {dt!r}")
    return value


def close(a: float, b: float) -> bool:
    """``a == b`` up to :data:`RTOL` (relative to the larger magnitude; exact at zero and for
    infinities, which no tolerance relative to an infinite magnitude may bring close)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= RTOL * max(abs(a), abs(b))


def all_close(values: np.ndarray, target: float) -> bool:
    """Every element of ``values`` is :func:`close` to ``target``."""
    values = np.asarray(values, dtype=np.float64)
    if not (math.isfinite(target) and bool(np.all(np.isfinite(values)))):
        return bool(np.all(values == target))
    scale = np.maximum(np.abs(values), abs(target))
    return bool(np.all(np.abs(values - target) <= RTOL * scale))


def heaviside_mismatch(surrogate: SurrogateFunctionBase) -> str | None:
    """Why ``surrogate`` does not fire with the Heaviside step NIR neurons use, or ``None``
    when it does (spiking mode, the base class's step as its forward)."""
    if not surrogate.spiking:
        return "in non-spiking mode"
    if type(surrogate).spike is not SurrogateFunctionBase.spike:
        return "whose forward is not the Heaviside step"
    return None


def surrogate_metadata(surrogate: SurrogateFunctionBase) -> dict[str, Any]:
    """``{"surrogate": name, "surrogate_params": {...}}`` of an snn surrogate (spiking mode)."""
    return {"surrogate": type(surrogate).__name__, "surrogate_params": {k: float(v) for k, v in surrogate.params.items()}}


def read_snn_metadata(where: str, metadata: Any) -> dict[str, Any]:
    """The checked ``snn`` entry of a node's metadata (``{}`` when absent).

    Returns a dict with any of ``module`` (str), ``surrogate`` (an instance), ``detach_reset``
    (bool), ``decay_input`` (bool, a parametric LIF's) and ``w`` (float).

    Raises:
        ValueError: the entry is present but malformed.
    """
    if not isinstance(metadata, Mapping) or METADATA_KEY not in metadata:
        return {}
    entry = metadata[METADATA_KEY]
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: metadata {METADATA_KEY!r}: expected a mapping, got {type(entry).__name__}")
    result: dict[str, Any] = {}
    if "module" in entry:
        if not isinstance(entry["module"], str):
            raise ValueError(f"{where}: metadata {METADATA_KEY!r}: module: expected a string")
        result["module"] = entry["module"]
    if "surrogate" in entry:
        name = entry["surrogate"]
        cls = SURROGATES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(
                f"{where}: metadata {METADATA_KEY!r}: surrogate: expected the name of an snn.surrogate class, got {name!r}"
            )
        params = entry.get("surrogate_params", {})
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise ValueError(f"{where}: metadata {METADATA_KEY!r}: surrogate_params: expected a mapping of names to numbers")
        try:
            values = {k: _metadata_real(v) for k, v in params.items()}
            surrogate = cls(**values)  # type: ignore[arg-type]  # surrogate parameters by name (never spiking)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: metadata {METADATA_KEY!r}: surrogate {name}: {exc}") from exc
        mismatch = heaviside_mismatch(surrogate)
        if mismatch is not None:
            raise ValueError(
                f"{where}: metadata {METADATA_KEY!r}: surrogate {name} {mismatch}: NIR neurons fire with a Heaviside step"
            )
        result["surrogate"] = surrogate
    for key in ("detach_reset", "decay_input"):
        if key in entry:
            flag = entry[key]
            if isinstance(flag, (bool, np.bool_)) or (isinstance(flag, (int, np.integer)) and int(flag) in (0, 1)):
                result[key] = bool(flag)
            else:
                raise ValueError(f"{where}: metadata {METADATA_KEY!r}: {key}: expected a bool, got {flag!r}")
    if "w" in entry:
        try:
            result["w"] = _metadata_real(entry["w"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: metadata {METADATA_KEY!r}: w: {exc}") from exc
    return result


def _metadata_real(value: Any) -> float:
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iuf":
        raise TypeError(f"expected a real number, got {value!r}")
    number = float(array)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number
