"""Plots of spiking activity on matplotlib: heat maps, spike rasters, potentials, firing rates.

The helpers of SpikingJelly's ``visualizing`` package, with the same names, arguments and
return values:

- :func:`plot_2d_heatmap`: a ``[T, N]`` array (spikes, potentials ...) as an image, neurons by
  time;
- :func:`plot_1d_spikes`: a spike raster of ``[T, N]`` spikes, with each neuron's firing rate;
- :func:`plot_one_neuron_v_s`: one neuron's membrane potential and spikes over time;
- :func:`plot_2d_feature_map`: the ``C`` channels of a ``[C, H, W]`` feature map in a grid;
- :func:`plot_2d_bar_in_3d`: a ``[T, N]`` array as rows of 3-D bars;

plus :func:`plot_firing_rate_histogram` (new): the distribution of firing rates of one or
several layers, e.g. from :func:`snn.monitor.firing_rate`.

Arrays may be numpy arrays or tensors (any device, with or without gradient). Each helper
creates a new figure through :mod:`matplotlib.pyplot`, so ``plt.savefig`` and ``plt.show`` act
on it as with the reference library, and returns it with its axes; none calls ``plt.show()``
itself. Close figures you are done with (``plt.close(fig)``).

matplotlib (with numpy) is an optional dependency: ``pip install "snn-core[plot]"``. It is
imported on the first call, so ``import snn.visualizing`` works without it and a plot raises
:class:`ImportError` naming the extra.
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_INSTALL_HINT",
    "plot_2d_heatmap",
    "plot_1d_spikes",
    "plot_one_neuron_v_s",
    "plot_2d_feature_map",
    "plot_2d_bar_in_3d",
    "plot_firing_rate_histogram",
]

#: The command that installs what :mod:`snn.visualizing` needs.
PLOT_INSTALL_HINT = 'pip install "snn-core[plot]"'


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"snn.visualizing needs matplotlib (module {name!r} could not be imported: {exc}); "
            f"install it with: {PLOT_INSTALL_HINT}"
        ) from exc


def _numpy() -> Any:
    return _import("numpy")


def _pyplot() -> Any:
    return _import("matplotlib.pyplot")


def _ticker() -> Any:
    return _import("matplotlib.ticker")


def _to_numpy(name: str, x: Any, ndim: int) -> np.ndarray:
    np = _numpy()
    array: Any
    if isinstance(x, torch.Tensor):
        array = x.detach().cpu()
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()
        array = array.numpy()
    elif isinstance(x, np.ndarray):
        array = x
    else:
        raise TypeError(f"{name}: expected a numpy array or a torch.Tensor, got {type(x).__name__}")
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {list(array.shape)}")
    if array.size == 0:  # nothing to draw; numpy's reductions would fail later with its own words
        raise ValueError(f"{name}: expected a non-empty array, got shape {list(array.shape)}")
    return array


def _integer_ticks(axis: Any, integer: bool) -> None:
    ticker = _ticker()
    axis.set_major_locator(ticker.MaxNLocator(integer=integer))
    axis.set_minor_locator(ticker.NullLocator())


def plot_2d_heatmap(
    array: np.ndarray | torch.Tensor,
    title: str,
    xlabel: str,
    ylabel: str,
    int_x_ticks: bool = True,
    int_y_ticks: bool = True,
    plot_colorbar: bool = True,
    colorbar_y_label: str = "magnitude",
    x_max: float | None = None,
    figsize: tuple[float, float] = (12, 8),
    dpi: int = 200,
) -> tuple[Figure, Axes]:
    """A ``[T, N]`` array as a heat map: neuron ``n`` is row ``n``, step ``t`` column ``t``.

    Typical use: the membrane potentials ``v_seq [T, N]`` of a layer over time.

    Args:
        array: ``[T, N]`` values.
        title, xlabel, ylabel: the axes' title and labels.
        int_x_ticks, int_y_ticks: put ticks on integers only.
        plot_colorbar: draw a colour bar labelled ``colorbar_y_label``.
        colorbar_y_label: the colour bar's label.
        x_max: stretch the x axis to ``[-0.5, x_max]`` (e.g. to show time in other units);
            ``None`` for ``[-0.5, T - 0.5]``.
        figsize, dpi: the figure's size (inches) and resolution.

    Returns:
        ``(figure, axes)``.

    Raises:
        TypeError: ``array`` is not an array or tensor.
        ValueError: ``array`` is not 2-D.
        ImportError: matplotlib is not installed.
    """
    values = _to_numpy("array", array, 2)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    extent = None if x_max is None else (-0.5, x_max, values.shape[1] - 0.5, -0.5)
    image = ax.imshow(values.T, aspect="auto", extent=extent)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _integer_ticks(ax.xaxis, int_x_ticks)
    _integer_ticks(ax.yaxis, int_y_ticks)
    if plot_colorbar:
        colorbar = fig.colorbar(image, ax=ax)
        colorbar.ax.set_ylabel(colorbar_y_label, rotation=90, va="top")
        colorbar.ax.yaxis.set_minor_locator(_ticker().NullLocator())
    return fig, ax


def plot_1d_spikes(
    spikes: np.ndarray | torch.Tensor,
    title: str,
    xlabel: str,
    ylabel: str,
    int_x_ticks: bool = True,
    int_y_ticks: bool = True,
    plot_firing_rate: bool = True,
    firing_rate_map_title: str = "firing rate",
    figsize: tuple[float, float] = (12, 8),
    dpi: int = 200,
) -> tuple[Figure, Axes]:
    """A spike raster of ``[T, N]`` spikes: a tick at ``(t, n)`` where neuron ``n`` fired at step ``t``.

    Elements equal to 1 are spikes. With ``plot_firing_rate`` a narrow panel on the right shows
    each neuron's firing rate (its mean over time).

    Args:
        spikes: ``[T, N]`` spikes.
        title, xlabel, ylabel: the raster's title and labels.
        int_x_ticks, int_y_ticks: put ticks on integers only.
        plot_firing_rate: add the firing-rate panel.
        firing_rate_map_title: the panel's title.
        figsize, dpi: the figure's size (inches) and resolution.

    Returns:
        ``(figure, raster axes)``.

    Raises:
        TypeError: ``spikes`` is not an array or tensor.
        ValueError: ``spikes`` is not 2-D.
        ImportError: matplotlib is not installed.
    """
    np = _numpy()
    values = _to_numpy("spikes", spikes, 2)
    plt = _pyplot()
    steps, neurons = values.shape
    if plot_firing_rate:
        fig = plt.figure(figsize=figsize, dpi=dpi, layout="tight")
        grid = fig.add_gridspec(1, 5)
        raster = fig.add_subplot(grid[0, 0:4])
        rate_panel = fig.add_subplot(grid[0, 4])
    else:
        fig, raster = plt.subplots(figsize=figsize, dpi=dpi)
    raster.set_title(title)
    raster.set_xlabel(xlabel)
    raster.set_ylabel(ylabel)
    _integer_ticks(raster.xaxis, int_x_ticks)
    _integer_ticks(raster.yaxis, int_y_ticks)
    raster.set_xlim(-0.5, steps - 0.5)
    raster.set_ylim(-0.5, neurons - 0.5)
    raster.invert_yaxis()
    times = np.arange(steps)
    colors = plt.get_cmap("tab10")
    for n in range(neurons):
        raster.eventplot(times[values[:, n] == 1], lineoffsets=n, colors=[colors(n % 10)])
    if plot_firing_rate:
        rates = values.mean(axis=0).reshape(neurons, 1)
        high, low = float(rates.max()), float(rates.min())
        rate_panel.imshow(rates, cmap="magma", aspect="auto")
        for n in range(neurons):
            dark = rates[n, 0] < 0.7 * high or low == high
            rate_panel.text(0, n, f"{rates[n, 0]:.2f}", ha="center", va="center", color="w" if dark else "black")
        _integer_ticks(rate_panel.yaxis, True)
        rate_panel.get_xaxis().set_visible(False)
        rate_panel.set_title(firing_rate_map_title)
    return fig, raster


def plot_one_neuron_v_s(
    v: np.ndarray | torch.Tensor,
    s: np.ndarray | torch.Tensor,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    title: str = "$V[t]$ and $S[t]$ of the neuron",
    figsize: tuple[float, float] = (12, 8),
    dpi: int = 200,
) -> tuple[Figure, Axes, Axes]:
    """One neuron over time: its membrane potential ``v [T]`` (top) and its spikes ``s [T]`` (bottom).

    Horizontal lines mark ``v_threshold`` and, for a hard reset, ``v_reset``.

    Args:
        v: ``[T]`` membrane potentials.
        s: ``[T]`` spikes (elements equal to 1 are spikes).
        v_threshold: the threshold line.
        v_reset: the reset line; ``None`` (soft reset) draws none.
        title: the title of the potential panel.
        figsize, dpi: the figure's size (inches) and resolution.

    Returns:
        ``(figure, potential axes, spike axes)``.

    Raises:
        TypeError: ``v`` or ``s`` is not an array or tensor.
        ValueError: ``v`` or ``s`` is not 1-D, or their lengths differ.
        ImportError: matplotlib is not installed.
    """
    np = _numpy()
    potentials = _to_numpy("v", v, 1)
    spikes = _to_numpy("s", s, 1)
    if potentials.shape != spikes.shape:
        raise ValueError(f"v, s: expected the same length, got {potentials.shape[0]} and {spikes.shape[0]}")
    plt = _pyplot()
    steps = spikes.shape[0]
    times = np.arange(steps)
    fig = plt.figure(figsize=figsize, dpi=dpi)
    grid = fig.add_gridspec(3, 1)
    ax_v = fig.add_subplot(grid[0:2, 0])
    ax_v.set_title(title)
    ax_v.plot(times, potentials)
    ax_v.set_xlim(-0.5, steps - 0.5)
    ax_v.set_ylabel("voltage")
    ax_v.axhline(v_threshold, label="$V_{threshold}$", linestyle="-.", c="r")
    if v_reset is not None:
        ax_v.axhline(v_reset, label="$V_{reset}$", linestyle="-.", c="g")
    ax_v.legend(frameon=True)
    ax_s = fig.add_subplot(grid[2, 0])
    ax_s.eventplot(times[spikes == 1], lineoffsets=0, colors="r")
    ax_s.set_xlim(-0.5, steps - 0.5)
    ax_s.set_xlabel("simulating step")
    ax_s.set_ylabel("spike")
    ax_s.set_yticks([])
    _integer_ticks(ax_s.xaxis, True)
    return fig, ax_v, ax_s


def plot_2d_feature_map(
    x3d: np.ndarray | torch.Tensor,
    nrows: int,
    ncols: int,
    space: int,
    title: str,
    figsize: tuple[float, float] = (12, 8),
    dpi: int = 200,
) -> tuple[Figure, Axes]:
    """The ``C`` channels of a ``[C, H, W]`` feature map as an ``nrows x ncols`` grid of gray images.

    Channels fill the grid row by row, separated by ``space`` pixels painted with the map's
    maximum. Typical use: the spikes ``s_seq[t, n]`` of a convolutional layer at one step.

    Args:
        x3d: ``[C, H, W]`` values.
        nrows, ncols: the grid, with ``nrows * ncols == C``.
        space: pixels between channels (``>= 0``).
        title: the figure's title.
        figsize, dpi: the figure's size (inches) and resolution.

    Returns:
        ``(figure, axes)``.

    Raises:
        TypeError: ``x3d`` is not an array or tensor, or a grid argument not an int.
        ValueError: ``x3d`` is not 3-D, ``nrows * ncols != C`` or ``space < 0``.
        ImportError: matplotlib is not installed.
    """
    np = _numpy()
    values = _to_numpy("x3d", x3d, 3)
    for name, value in (("nrows", nrows), ("ncols", ncols), ("space", space)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    channels, height, width = values.shape
    if nrows * ncols != channels or nrows < 1:
        raise ValueError(f"nrows, ncols: expected nrows * ncols == C = {channels}, got {nrows} * {ncols}")
    if space < 0:
        raise ValueError(f"space: expected an int >= 0, got {space}")
    canvas = np.full(((height + space) * nrows, (width + space) * ncols), values.max(), dtype=np.float64)
    offset = space // 2
    for index in range(channels):
        row, col = divmod(index, ncols)
        top = offset + row * (height + space)
        left = offset + col * (width + space)
        canvas[top : top + height, left : left + width] = values[index]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    ax.set_title(title)
    ax.imshow(canvas, cmap="gray")
    ax.get_xaxis().set_visible(False)
    ax.get_yaxis().set_visible(False)
    return fig, ax


def plot_2d_bar_in_3d(
    array: np.ndarray | torch.Tensor,
    title: str,
    xlabel: str,
    ylabel: str,
    zlabel: str,
    int_x_ticks: bool = True,
    int_y_ticks: bool = True,
    int_z_ticks: bool = False,
    dpi: int = 200,
) -> tuple[Figure, Axes]:
    """A ``[T, N]`` array as 3-D bars: one row of ``T`` bars per neuron ``n`` (e.g. rates per epoch).

    Args:
        array: ``[T, N]`` values.
        title, xlabel, ylabel, zlabel: the title and axis labels (x: neuron, y: step, z: value).
        int_x_ticks, int_y_ticks, int_z_ticks: put ticks on integers only.
        dpi: the figure's resolution.

    Returns:
        ``(figure, 3-D axes)``.

    Raises:
        TypeError: ``array`` is not an array or tensor.
        ValueError: ``array`` is not 2-D.
        ImportError: matplotlib is not installed.
    """
    np = _numpy()
    values = _to_numpy("array", array, 2)
    plt = _pyplot()
    fig = plt.figure(dpi=dpi)
    ax = fig.add_subplot(111, projection="3d")
    ax.set_title(title)
    colors = plt.get_cmap("tab10")
    steps = np.arange(values.shape[0])
    for n in range(values.shape[1]):
        ax.bar(steps, values[:, n], n, zdir="x", color=colors(n % 10), alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_zlabel(zlabel)
    ticker = _ticker()
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=int_x_ticks))
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=int_y_ticks))
    ax.zaxis.set_major_locator(ticker.MaxNLocator(integer=int_z_ticks))
    return fig, ax


def plot_firing_rate_histogram(
    rates: np.ndarray | torch.Tensor | Mapping[str, np.ndarray | torch.Tensor],
    bins: int = 20,
    title: str = "firing rates",
    xlabel: str = "firing rate",
    ylabel: str = "neurons",
    figsize: tuple[float, float] = (8, 5),
    dpi: int = 100,
) -> tuple[Figure, Axes]:
    """Histogram of per-neuron firing rates over ``[0, 1]``, one outline per layer for a mapping.

    Typical input: ``snn.monitor.firing_rate(s_seq, dim=0)`` (each neuron's rate over the steps
    of ``s_seq [T, N, *]``), or ``{layer name: rates}`` to compare layers. Silent (rate 0) and
    saturated (rate 1) neurons fall in the first and last bins.

    Args:
        rates: rates of any shape (flattened), or a mapping ``label -> rates``.
        bins: the number of equal bins over ``[0, 1]``, ``>= 1``.
        title, xlabel, ylabel: the axes' title and labels.
        figsize, dpi: the figure's size (inches) and resolution.

    Returns:
        ``(figure, axes)``.

    Raises:
        TypeError: ``rates`` (or a value of the mapping) is not an array or tensor, or ``bins``
            not an int.
        ValueError: ``bins < 1``, an empty mapping, or a rate outside ``[0, 1]`` (or NaN).
        ImportError: matplotlib is not installed.
    """
    np = _numpy()
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
        raise TypeError(f"bins: expected an int >= 1, got {type(bins).__name__} {bins!r}")
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins: expected an int >= 1, got {bins}")
    single = not isinstance(rates, Mapping)
    series = {"": rates} if single else dict(rates)
    if not series:
        raise ValueError("rates: expected at least one layer, got an empty mapping")
    flat: dict[Any, Any] = {}  # numpy arrays (``np`` is the module imported on first call here)
    for label, values in series.items():
        name = "rates" if single else f"rates[{label!r}]"  # a key 0 is a label too
        if isinstance(values, torch.Tensor):
            values = values.reshape(-1)
        elif isinstance(values, np.ndarray):
            values = values.reshape(-1)
        array = _to_numpy(name, values, 1).astype(np.float64)
        if not np.all((array >= 0.0) & (array <= 1.0)):
            raise ValueError(f"{name}: expected firing rates in [0, 1], got values from {array.min()} to {array.max()}")
        flat[label] = array
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    edges = np.linspace(0.0, 1.0, bins + 1)
    several = len(flat) > 1
    for label, array in flat.items():
        ax.hist(array, bins=edges, histtype="step" if several else "bar", linewidth=1.5,
                label=None if single else str(label))
    ax.set_xlim(0.0, 1.0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if several:
        ax.legend()
    return fig, ax
