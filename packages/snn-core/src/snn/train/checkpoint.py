"""The files of a training run: per-epoch checkpoints, the model file, atomic writes.

A run directory holds ``checkpoint.pt`` (rewritten after every epoch: weights, optimizer,
learner state, the states of every random generator, the epoch and the metrics so far) and,
once the run ends, ``model.pt`` (the weights and the configuration that rebuilds the network).
Both hold only tensors and plain data (dicts, lists, strings, numbers), so they load with
``torch.load(path, weights_only=True)``; nothing in them is unpickled as a Python object.

Every file is written atomically: into a temporary file in the same folder, flushed to disk,
then renamed over the old one. A run killed at any moment leaves the previous complete file,
never a torn one. Loading checks the format and reports a truncated, corrupted or foreign file
as a :class:`RunFileError` naming the file.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from snn.errors import SNNError

__all__ = [
    "CHECKPOINT_FILE",
    "MODEL_FILE",
    "CHECKPOINT_FORMAT",
    "MODEL_FORMAT",
    "FORMAT_VERSION",
    "RunFileError",
    "atomic_write",
    "atomic_save",
    "capture_rng_states",
    "restore_rng_states",
    "load_run_file",
    "load_checkpoint",
    "load_model_file",
    "remove_stale_temporaries",
]

#: Name of the per-epoch checkpoint in a run directory.
CHECKPOINT_FILE = "checkpoint.pt"
#: Name of the model file in a run directory.
MODEL_FILE = "model.pt"
#: ``format`` entry of a checkpoint.
CHECKPOINT_FORMAT = "snn-train-checkpoint"
#: ``format`` entry of a model file.
MODEL_FORMAT = "snn-train-model"
#: Version of both layouts; a file of another version is refused.
FORMAT_VERSION = 1

_TEMPORARY_PREFIX = ".tmp-"


class RunFileError(SNNError, ValueError):
    """A run file (``model.pt``, ``checkpoint.pt``) is missing, unreadable or malformed.

    The message names the file and what is wrong with it; the error that ``torch.load``
    raised, if any, is chained as ``__cause__``.
    """


def too_large_error(file: Path, hidden: int, exc: BaseException) -> RunFileError | None:
    """The :class:`RunFileError` naming ``file`` when ``exc`` is an allocation failure of the
    network its configuration (``hidden`` units) describes, or ``None`` for any other error."""
    from snn.cli import _out_of_memory  # the rule snn's commands use for allocation failures

    if _out_of_memory(exc) is None:
        return None
    return RunFileError(f"{file}: the network its configuration describes (hidden={hidden}) does not fit in memory")


# -- writing ---------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported here (e.g. Windows): the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new file.

    The bytes go to a temporary file in the same folder, which is flushed to disk and renamed
    over ``path``; the folder is synced too, so the rename survives a power loss.

    Args:
        path: the file to (re)write; its folder must exist.
        data: the complete content.

    Raises:
        OSError: the folder is not writable or the disk is full (``path`` is unchanged).
    """
    path = Path(path)
    temporary = path.with_name(f"{_TEMPORARY_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` into ``path`` atomically (see :func:`atomic_write`)."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


#: The files of a run directory that :func:`atomic_write` writes (its temporaries are
#: ``.tmp-<name>.<pid>``).
_RUN_FILE_NAMES = (CHECKPOINT_FILE, MODEL_FILE, "metrics.json")


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files that a killed run's :func:`atomic_write` left in
    ``directory`` (regular files named ``.tmp-<run file>.<pid>``); anything else, a user's
    ``.tmp-notes.txt`` or a folder, is left alone."""
    for name in _RUN_FILE_NAMES:
        for leftover in Path(directory).glob(f"{_TEMPORARY_PREFIX}{name}.*"):
            pid = leftover.name[len(_TEMPORARY_PREFIX) + len(name) + 1:]
            if pid.isdigit() and leftover.is_file() and not leftover.is_symlink():
                leftover.unlink(missing_ok=True)


# -- random states ---------------------------------------------------------------------------


def _numpy_random() -> Any:
    try:
        import numpy.random
    except ImportError:
        return None
    return numpy.random


def capture_rng_states(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    """The states of every random source a run may draw from, as tensors and plain data.

    Args:
        generators: the run's own generators by name (batch order, coding).

    Returns:
        ``{"torch", "cuda", "numpy", "python", "generators"}``: torch's global CPU state, the
        state of every CUDA device (an empty list without CUDA), numpy's legacy global state
        (``None`` without numpy), Python's ``random`` state, and ``name -> state`` of
        ``generators``.
    """
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": None,
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "generators": {name: generator.get_state() for name, generator in generators.items()},
    }
    np_random = _numpy_random()
    if np_random is not None:
        name, keys, position, has_gauss, cached = np_random.get_state(legacy=True)
        states["numpy"] = {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype("int64")),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    return states


def restore_rng_states(states: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> None:
    """Put back what :func:`capture_rng_states` recorded.

    Args:
        states: the recorded states.
        generators: the run's generators by name; each must have a recorded state.

    Raises:
        KeyError: a generator has no recorded state.
    """
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    np_random = _numpy_random()
    if states["numpy"] is not None and np_random is not None:
        saved = states["numpy"]
        keys = saved["keys"].numpy().astype("uint32")
        np_random.set_state((saved["name"], keys, saved["position"], saved["has_gauss"], saved["cached_gaussian"]))
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])


# -- reading ---------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def load_run_file(path: Path, expected_format: str, what: str) -> dict[str, Any]:
    """Load a run file with ``weights_only=True`` and check its ``format`` and version.

    Args:
        path: the file.
        expected_format: :data:`MODEL_FORMAT` or :data:`CHECKPOINT_FORMAT`.
        what: how to call the file in messages (``"model file"``).

    Returns:
        The file's dictionary, tensors on the CPU.

    Raises:
        RunFileError: missing, unreadable (truncated, corrupted), holding pickled Python
            objects, or of another format or version.
    """
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path}: no such {what}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with warnings.catch_warnings():
            # the restricted unpickler warns about pickle protocols it was not written for; the
            # file is refused below if it cannot read it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message opens with advice to load the file with weights_only=False, which for
        # an untrusted file means running its code: only the reason is passed on
        text = str(exc)
        if "unsupported global" in text.lower() or "allowed global" in text.lower():
            raise RunFileError(
                f"{path}: not loaded: the file holds pickled Python objects, and snn loads only tensors "
                f"and plain data (torch.load(..., weights_only=True)); it was not written by snn train"
            ) from exc
        # a damaged stream: the restricted unpickler's own reason ("Unsupported operand 50" ...)
        marker = "WeightsUnpickler error:"
        reason = text.split(marker, 1)[1].strip() if marker in text else ""
        detail = reason.splitlines()[0] if reason else "the restricted unpickler could not read it"
        raise RunFileError(f"{path}: not a readable {what}: it is corrupted ({detail})") from exc
    except Exception as exc:  # torch reports a damaged archive with many exception types
        raise RunFileError(
            f"{path}: not a readable {what}: the file is truncated or corrupted ({_first_line(exc)})"
        ) from exc
    if not isinstance(content, dict) or content.get("format") != expected_format:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise RunFileError(
            f"{path}: not an snn train {what}: expected format {expected_format!r}, found {found!r}"
        )
    if content.get("format_version") != FORMAT_VERSION:
        raise RunFileError(
            f"{path}: {what} format version {content.get('format_version')!r} is not supported "
            f"(this snn reads version {FORMAT_VERSION})"
        )
    return content


def _require(content: Mapping[str, Any], path: Path, what: str, key: str, kind: type | tuple[type, ...]) -> Any:
    value = content.get(key)
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise RunFileError(f"{path}: malformed {what}: {key!r} should be a {names}, found {type(value).__name__}")
    return value


def _check_state_dict(state: Mapping[str, Any], path: Path, what: str, key: str) -> None:
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise RunFileError(f"{path}: malformed {what}: {key!r} should map names to tensors, found {name!r}")


def load_model_file(path: Path) -> dict[str, Any]:
    """Load and check a ``model.pt`` (see :func:`load_run_file`).

    Returns:
        ``{"config": dict, "state_dict": dict, "step_mode": str, "metrics": dict, ...}``.

    Raises:
        RunFileError: as :func:`load_run_file`, or a missing or mistyped entry.
    """
    content = load_run_file(path, MODEL_FORMAT, "model file")
    _require(content, path, "model file", "config", dict)
    _check_state_dict(_require(content, path, "model file", "state_dict", dict), path, "model file", "state_dict")
    _require(content, path, "model file", "metrics", dict)
    if content.get("step_mode") not in ("m", "s"):
        raise RunFileError(f"{path}: malformed model file: 'step_mode' should be 'm' or 's', found {content.get('step_mode')!r}")
    return content


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a ``checkpoint.pt`` (see :func:`load_run_file`).

    Returns:
        ``{"config", "epoch", "history", "model", "optimizer", "learner_state", "rng", ...}``.

    Raises:
        RunFileError: as :func:`load_run_file`, or a missing or mistyped entry.
    """
    what = "checkpoint"
    content = load_run_file(path, CHECKPOINT_FORMAT, what)
    _require(content, path, what, "config", dict)
    epoch = _require(content, path, what, "epoch", int)
    history = _require(content, path, what, "history", list)
    if epoch < 0 or len(history) != epoch or not all(isinstance(h, dict) for h in history):
        raise RunFileError(f"{path}: malformed checkpoint: epoch {epoch} with {len(history)} history entries")
    _check_state_dict(_require(content, path, what, "model", dict), path, what, "model")
    _require(content, path, what, "optimizer", dict)
    for index, entry in enumerate(history):
        problem = _history_entry_problem(index, entry)
        if problem is not None:
            raise RunFileError(f"{path}: malformed checkpoint: history entry {index}: {problem}")
    rng = _require(content, path, what, "rng", dict)
    problem = _rng_states_problem(rng)
    if problem is not None:
        raise RunFileError(f"{path}: malformed checkpoint: the random states: {problem}")
    return content


#: The entries of one epoch's record in a checkpoint's history (:class:`snn.train.config.EpochRecord`).
_HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _history_entry_problem(index: int, entry: Mapping[str, Any]) -> str | None:
    """What is wrong with the record of epoch ``index + 1``, or ``None``."""
    if sorted(entry) != sorted(_HISTORY_KEYS):
        return f"has the keys {sorted(map(str, entry))}, expected {sorted(_HISTORY_KEYS)}"
    if entry["epoch"] != index + 1 or not isinstance(entry["epoch"], int) or isinstance(entry["epoch"], bool):
        return f"'epoch' should be {index + 1}, found {entry['epoch']!r}"
    for key in _HISTORY_KEYS[1:]:
        value = entry[key]
        if not _is_real(value):
            return f"{key!r} should be a number, found {type(value).__name__}"
        if key.endswith("accuracy") and not 0.0 <= value <= 1.0 or key == "seconds" and not value >= 0.0:
            return f"{key!r} is out of range: {value!r}"
    return None


def _byte_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _rng_states_problem(rng: Mapping[str, Any]) -> str | None:
    """What is wrong with the recorded random states (the layout of :func:`capture_rng_states`), or ``None``."""
    if not _byte_state(rng.get("torch")):
        return "'torch' should be a uint8 state tensor"
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, list) or not all(_byte_state(c) for c in cuda):
        return "'cuda' should be a list of uint8 state tensors"
    generators = rng.get("generators")
    if not isinstance(generators, dict) or not all(isinstance(k, str) and _byte_state(v) for k, v in generators.items()):
        return "'generators' should map names to uint8 state tensors"
    python = rng.get("python")
    if not (
        isinstance(python, dict)
        and isinstance(python.get("version"), int)
        and isinstance(python.get("state"), (list, tuple))
        and all(isinstance(v, int) and not isinstance(v, bool) for v in python["state"])
        and (python.get("gauss_next") is None or _is_real(python.get("gauss_next")))
    ):
        return "'python' should hold random.getstate()'s version, state integers and gauss_next"
    numpy_state = rng.get("numpy")
    if numpy_state is not None and not (
        isinstance(numpy_state, dict)
        and isinstance(numpy_state.get("name"), str)
        and isinstance(numpy_state.get("keys"), torch.Tensor)
        and numpy_state["keys"].dtype == torch.int64
        and numpy_state["keys"].dim() == 1
        and all(_is_real(numpy_state.get(k)) for k in ("position", "has_gauss", "cached_gaussian"))
    ):
        return "'numpy' should be None or hold numpy's legacy state (name, int64 keys, position, has_gauss, cached_gaussian)"
    return None
