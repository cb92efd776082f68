"""What ``snn bench`` reports: one :class:`BenchRow` per measurement, the :class:`Skipped`
configurations, the :class:`BenchReport` around them, and the bytes-moved floor."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["WIDE_SPREAD", "PHASES", "BenchRow", "Skipped", "BenchReport", "format_ms", "floor_bytes"]

#: A measurement whose slowest and fastest runs differ by more than this fraction of the median
#: gets a warning (a quiet machine stays within a few tens of percent).
WIDE_SPREAD = 0.5

#: The three timed phases, in the order of a row's fields.
PHASES = ("forward", "backward", "inference")

@dataclass(frozen=True)
class BenchRow:
    """One measured configuration (times in milliseconds, medians).

    Attributes:
        backend: backend name, or :data:`~snn.bench.measure.REFERENCE_NAME` for the reference library.
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        T: time steps.
        N: neurons per step.
        dtype: dtype name, e.g. ``"float32"``.
        forward_ms: forward with gradients enabled.
        backward_ms: backward of that forward.
        inference_ms: forward under ``no_grad``.
        vs_torch: the torch backend's training time (forward + backward) divided by this
            row's (above 1: faster than torch); ``None`` when torch was not measured.
        vs_reference: the same against the reference library; ``None`` without it.
        forward_gbps: floor bytes of the forward with grad / forward time, in GB/s.
        backward_gbps: floor bytes of the backward / backward time.
        inference_gbps: floor bytes of inference / inference time.
        matches_torch: whether the inference spikes equal the torch backend's on the same
            input (``None`` when torch was not measured, and on the torch row itself).
        forward_min_ms, forward_max_ms, backward_min_ms, backward_max_ms, inference_min_ms,
            inference_max_ms: the fastest and slowest timed run of each phase (equal to the
            median with one run).
        copy_gbps: the bandwidth of ``dst.copy_(src)`` on ``[T, N]`` tensors of this dtype
            (bytes read plus written over time, median of the same rounds), in GB/s.
    """

    backend: str
    kind: str
    T: int
    N: int
    dtype: str
    forward_ms: float
    backward_ms: float
    inference_ms: float
    vs_torch: float | None = None
    vs_reference: float | None = None
    forward_gbps: float = 0.0
    backward_gbps: float = 0.0
    inference_gbps: float = 0.0
    matches_torch: bool | None = None
    forward_min_ms: float | None = None
    forward_max_ms: float | None = None
    backward_min_ms: float | None = None
    backward_max_ms: float | None = None
    inference_min_ms: float | None = None
    inference_max_ms: float | None = None
    copy_gbps: float | None = None

    @property
    def train_ms(self) -> float:
        """Forward plus backward."""
        return self.forward_ms + self.backward_ms

    def of_copy(self, phase: str) -> float | None:
        """``phase``'s bandwidth (``"forward"``, ``"backward"``, ``"inference"``) over the copy's."""
        if not self.copy_gbps:
            return None
        return getattr(self, f"{phase}_gbps") / self.copy_gbps

    def spread(self, phase: str) -> float | None:
        """``(slowest - fastest) / median`` of ``phase`` (``"forward"``, ``"backward"`` or
        ``"inference"``); ``None`` when the range was not recorded."""
        low, high = getattr(self, f"{phase}_min_ms"), getattr(self, f"{phase}_max_ms")
        median = getattr(self, f"{phase}_ms")
        if low is None or high is None or not median > 0:
            return None
        return (high - low) / median

    def wide_phases(self, threshold: float = WIDE_SPREAD) -> list[str]:
        """The phases whose spread exceeds ``threshold`` (see :meth:`spread`)."""
        return [phase for phase in PHASES if (self.spread(phase) or 0.0) > threshold]


@dataclass(frozen=True)
class Skipped:
    """A backend or configuration that was not measured, and why.

    Attributes:
        backend: backend name (or :data:`~snn.bench.measure.REFERENCE_NAME`).
        reason: why it could not run (probe result, missing kernel, dtype, device, error).
        kind: the neuron kind, or ``None`` when the whole backend was skipped.
        dtype: the dtype name, or ``None`` when it does not depend on it.
    """

    backend: str
    reason: str
    kind: str | None = None
    dtype: str | None = None


@dataclass
class BenchReport:
    """Everything one benchmark run found.

    Attributes:
        device: where it ran, e.g. ``"cpu"``.
        rows: the measurements.
        skipped: what could not be measured.
        repeats: timed runs per measurement (the median is reported).
        threads: ``torch.get_num_threads()`` during the run.
        torch_version: ``torch.__version__``.
        reference_version: the reference library's version, or ``None`` when absent.
    """

    device: str
    rows: list[BenchRow]
    skipped: list[Skipped]
    repeats: int
    threads: int
    torch_version: str
    reference_version: str | None

    @property
    def warnings(self) -> list[str]:
        """Why some figures should not be trusted: measurements whose runs spread widely."""
        wide = [
            f"{r.backend} {r.kind} T={r.T} N={r.N} {r.dtype} "
            + ", ".join(
                f"{phase} {format_ms(getattr(r, f'{phase}_min_ms'))}-{format_ms(getattr(r, f'{phase}_max_ms'))} ms"
                for phase in r.wide_phases()
            )
            for r in self.rows
            if r.wide_phases()
        ]
        if not wide:
            return []
        return [
            f"{len(wide)} of {len(self.rows)} measurements spread widely (slowest minus fastest run "
            f"above {WIDE_SPREAD:.0%} of the median): {'; '.join(wide)}. The machine was probably busy "
            "(another job, frequency scaling): these medians and the ratios between backends are "
            "unreliable; rerun on an idle machine, with more --repeats."
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary."""
        return {
            "device": self.device,
            "repeats": self.repeats,
            "threads": self.threads,
            "torch_version": self.torch_version,
            "reference_version": self.reference_version,
            "rows": [asdict(r) for r in self.rows],
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": self.warnings,
        }


def format_ms(value: float) -> str:
    """A time in ms with three significant digits and no exponent (``0.0934``, ``18.0``, ``1110``)."""
    return f"{value:.0f}" if value >= 99.95 else f"{value:#.3g}"


def floor_bytes(T: int, N: int, dtype: torch.dtype) -> dict[str, int]:
    """Bytes a multi-step layer must move at least, by phase.

    Args:
        T: time steps.
        N: neurons per step.
        dtype: storage dtype.

    Returns:
        ``{"forward": 3 * s * T * N, "backward": 3 * s * T * N, "inference": 2 * s * T * N}``
        with ``s`` the dtype's item size (12, 12 and 8 bytes per neuron-step in float32).
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    steps = T * N
    return {"forward": 3 * itemsize * steps, "backward": 3 * itemsize * steps, "inference": 2 * itemsize * steps}
