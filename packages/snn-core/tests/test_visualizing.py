"""Tests of snn.visualizing: what each figure draws, read back from its matplotlib artists."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snn import visualizing  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _event_times(ax: object) -> list[list[float]]:
    """The x positions of the ticks of each eventplot row of ``ax``."""
    collections = ax.collections  # type: ignore[attr-defined]  # ax: a matplotlib Axes (not imported at module level)
    return [sorted(float(segment[0, 0]) for segment in c.get_segments()) for c in collections]


def test_heatmap_shows_neurons_by_time() -> None:
    v = torch.randn(7, 3, requires_grad=True)  # [T, N], with an autograd graph
    fig, ax = visualizing.plot_2d_heatmap(v * 2, "v", "t", "neuron", colorbar_y_label="voltage", dpi=50)
    assert fig in [plt.figure(n) for n in plt.get_fignums()]  # pyplot manages it, as in the reference
    (image,) = ax.get_images()
    np.testing.assert_array_equal(image.get_array(), (v * 2).detach().numpy().T)
    assert ax.get_title() == "v" and ax.get_xlabel() == "t" and ax.get_ylabel() == "neuron"
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "voltage"
    fig, ax = visualizing.plot_2d_heatmap(np.ones((4, 2)), "", "", "", plot_colorbar=False, x_max=10.0, dpi=50)
    assert len(fig.axes) == 1
    assert ax.get_images()[0].get_extent() == [-0.5, 10.0, 1.5, -0.5]


def test_spike_raster_ticks_and_rates() -> None:
    spikes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # [T=4, N=3]
    fig, ax = visualizing.plot_1d_spikes(spikes, "raster", "t", "neuron", dpi=50)
    assert _event_times(ax) == [[0.0, 2.0, 3.0], [], [1.0, 2.0]]
    rate_panel = fig.axes[1]
    np.testing.assert_allclose(rate_panel.get_images()[0].get_array().ravel(), [0.75, 0.0, 0.5])
    assert [t.get_text() for t in rate_panel.texts] == ["0.75", "0.00", "0.50"]
    fig, ax = visualizing.plot_1d_spikes(spikes.numpy(), "raster", "t", "neuron", plot_firing_rate=False, dpi=50)
    assert len(fig.axes) == 1


def test_one_neuron_potential_and_spikes() -> None:
    v = torch.tensor([0.2, 0.7, 1.1, 0.0, 0.5])
    s = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    fig, ax_v, ax_s = visualizing.plot_one_neuron_v_s(v, s, v_threshold=1.0, v_reset=0.0, dpi=50)
    line = ax_v.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), v.numpy())
    thresholds = sorted(float(line.get_ydata()[0]) for line in ax_v.get_lines()[1:])
    assert thresholds == [0.0, 1.0]
    assert _event_times(ax_s) == [[2.0]]
    _, ax_v, _ = visualizing.plot_one_neuron_v_s(v, s, v_reset=None, dpi=50)
    assert len(ax_v.get_lines()) == 2  # no reset line for a soft reset
    with pytest.raises(ValueError, match="v, s: expected the same length, got 5 and 4"):
        visualizing.plot_one_neuron_v_s(v, s[:4])


def test_feature_map_places_channels_row_by_row() -> None:
    x3d = torch.arange(6 * 2 * 3, dtype=torch.float32).view(6, 2, 3)
    fig, ax = visualizing.plot_2d_feature_map(x3d, 2, 3, 2, "S[0]", dpi=50)
    canvas = ax.get_images()[0].get_array()
    assert canvas.shape == ((2 + 2) * 2, (3 + 2) * 3)
    for index in range(6):
        row, col = divmod(index, 3)
        top, left = 1 + row * 4, 1 + col * 5
        np.testing.assert_array_equal(canvas[top : top + 2, left : left + 3], x3d[index].numpy())
    assert canvas[0, 0] == x3d.max().item()  # the spacing is painted with the maximum
    with pytest.raises(ValueError, match=r"nrows, ncols: expected nrows \* ncols == C = 6, got 4 \* 2"):
        visualizing.plot_2d_feature_map(x3d, 4, 2, 1, "")


def test_bar_chart_in_3d_draws_one_row_of_bars_per_neuron(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpl_toolkits.mplot3d import Axes3D

    calls: list[tuple[list[float], list[float], float]] = []
    original = Axes3D.bar

    def recording_bar(self: Axes3D, left: object, height: object, zs: float = 0, *args: object, **kwargs: object) -> object:
        calls.append((list(np.asarray(left)), list(np.asarray(height)), zs))
        return original(self, left, height, zs, *args, **kwargs)

    monkeypatch.setattr(Axes3D, "bar", recording_bar)
    array = torch.rand(5, 3)  # [T, N]
    fig, ax = visualizing.plot_2d_bar_in_3d(array, "rates", "neuron", "epoch", "rate", dpi=50)
    assert ax.name == "3d" and len(ax.patches) == 5 * 3
    assert [zs for _, _, zs in calls] == [0, 1, 2]
    for n, (steps, heights, _) in enumerate(calls):
        assert steps == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(heights, array[:, n].numpy())


def test_firing_rate_histogram_counts() -> None:
    rates = torch.tensor([0.0, 0.0, 0.12, 0.5, 0.51, 1.0])
    fig, ax = visualizing.plot_firing_rate_histogram(rates, bins=4)
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == np.histogram(rates.numpy(), bins=4, range=(0, 1))[0].tolist() == [3, 0, 2, 1]
    fig, ax = visualizing.plot_firing_rate_histogram({"hidden": rates, "output": rates[:2].numpy()}, bins=2)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["hidden", "output"]
    with pytest.raises(ValueError, match=r"rates\['x'\]: expected firing rates in \[0, 1\]"):
        visualizing.plot_firing_rate_histogram({"x": torch.tensor([1.5])})
    with pytest.raises(ValueError, match="bins: expected an int >= 1, got 0"):
        visualizing.plot_firing_rate_histogram(rates, bins=0)
    with pytest.raises(ValueError, match="empty mapping"):
        visualizing.plot_firing_rate_histogram({})
    # a key 0 is a label like any other; NumPy integers are bin counts
    fig, ax = visualizing.plot_firing_rate_histogram({0: rates, 1: rates}, bins=np.int64(2))
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["0", "1"]
    with pytest.raises(ValueError, match=r"rates\[0\]: expected firing rates"):
        visualizing.plot_firing_rate_histogram({0: rates + 1.0, 1: rates})


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match=r"array: expected a 2-D array, got shape \[3\]"):
        visualizing.plot_2d_heatmap(torch.ones(3), "", "", "")
    with pytest.raises(TypeError, match="spikes: expected a numpy array or a torch.Tensor, got list"):
        visualizing.plot_1d_spikes([[1.0]], "", "", "")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match=r"spikes: expected a non-empty array, got shape \[4, 0\]"):
        visualizing.plot_1d_spikes(torch.zeros(4, 0), "", "", "")
    # half-precision tensors are drawn as float32
    fig, ax = visualizing.plot_2d_heatmap(torch.ones(2, 2, dtype=torch.bfloat16), "", "", "", dpi=50)
    assert ax.get_images()[0].get_array().dtype == np.float32


def test_no_helper_shows_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("plt.show() was called")

    monkeypatch.setattr(plt, "show", fail)
    visualizing.plot_2d_heatmap(torch.rand(3, 2), "", "", "", dpi=50)
    visualizing.plot_1d_spikes(torch.ones(3, 2), "", "", "", dpi=50)
    visualizing.plot_one_neuron_v_s(torch.rand(3), torch.ones(3), dpi=50)
    visualizing.plot_2d_feature_map(torch.rand(4, 2, 2), 2, 2, 1, "", dpi=50)
    visualizing.plot_2d_bar_in_3d(torch.rand(3, 2), "", "", "", "", dpi=50)
    visualizing.plot_firing_rate_histogram(torch.rand(5))


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails with ImportError
    with pytest.raises(ImportError, match=r'snn.visualizing needs matplotlib .*pip install "snn-core\[plot\]"'):
        visualizing.plot_2d_heatmap(torch.rand(3, 2), "", "", "")
