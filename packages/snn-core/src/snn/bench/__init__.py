"""``snn bench``: time multi-step neurons on every installed backend, side by side.

For each installed backend, neuron model (IF, LIF, PLIF by default), sequence length ``T``, number of
neurons ``N`` and dtype, a multi-step neuron layer is timed forward (with gradients), backward
and in inference; each row gives the medians, the training time relative to the torch backend
and to the reference library (SpikingJelly, when importable), the achieved bandwidth against the
bytes-moved floor, and whether the spikes equal the torch backend's. Backends that cannot run
here are listed with their reason.

- :mod:`snn.bench.measure`: the measurements (:func:`benchmark` returns a :class:`BenchReport`);
- :mod:`snn.bench.report`: the results (:class:`BenchRow`, :class:`Skipped`, :class:`BenchReport`);
- :mod:`snn.bench.command`: the command (:func:`add_arguments`, :func:`run`), used by
  :mod:`snn.cli` and by ``python -m snn.bench``.
"""

from __future__ import annotations

from snn.bench.command import add_arguments, format_table, main, run
from snn.bench.measure import DESCRIPTION, DTYPES, KINDS, REFERENCE_NAME, benchmark, time_neuron
from snn.bench.report import BenchReport, BenchRow, Skipped, floor_bytes

__all__ = [
    "DESCRIPTION",
    "DTYPES",
    "KINDS",
    "REFERENCE_NAME",
    "BenchReport",
    "BenchRow",
    "Skipped",
    "add_arguments",
    "benchmark",
    "floor_bytes",
    "format_table",
    "main",
    "run",
    "time_neuron",
]
