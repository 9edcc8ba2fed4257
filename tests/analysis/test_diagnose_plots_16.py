"""Issue 16, item 20: diagnose's pictures show the words, fixed gate colours, readable log ticks.

The figures come back from :func:`rnnkit.analysis.plots.curves` and ``heatmap`` (closed,
but their artists are still there to read).
"""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.analysis import axes, plots


def tick_texts(axis) -> list[str]:
    axis.figure.canvas.draw()
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def test_word_axes_label_every_word_and_a_readable_subset_of_long_texts():
    words = ["the", "stock", "market", "fell", "sharply", "in", "early", "trading"]
    assert axes.token_ticks(words) == (list(range(8)), words)
    many = [f"w{i}" for i in range(100)]
    positions, labels = axes.token_ticks(many)
    assert len(labels) <= axes.MAX_TICKS and labels == [many[p] for p in positions]
    assert axes.token_ticks(["\n", " ", "a" * 20])[1] == ["\\n", "␣", "a" * 11 + "…"]


def test_heatmap_ticks_are_the_words(tmp_path):
    words = ["the", "cat", "sat", "on", "the", "mat"]
    G = np.tril(np.ones((6, 6)))
    fig = plots.heatmap(G, tmp_path / "g.png", "k", "t", "title", xtokens=words, ytokens=words)
    ax = fig.axes[0]
    assert tick_texts(ax.xaxis) == words and tick_texts(ax.yaxis) == words


def test_gate_heatmap_colours_are_fixed_to_0_1_with_a_labelled_colorbar(tmp_path):
    values = np.full((4, 10), 0.5) + np.linspace(-0.1, 0.1, 10)  # 0.4 .. 0.6: auto-scaled before
    fig = plots.heatmap(
        values,
        tmp_path / "gate.png",
        "step t",
        "unit",
        "forget",
        log=False,
        limits=(0, 1),
        clabel="forget gate",
    )
    image_ax, colorbar_ax = fig.axes
    assert image_ax.images[0].get_clim() == (0, 1)
    assert colorbar_ax.get_ylabel() == "forget gate"


def test_log_axis_floor_stays_above_denormals_and_ticks_read_as_powers_of_ten(tmp_path):
    y = [1e14, 1.0, 1e-20, 1e-314, 0.0, float("nan")]
    fig = plots.curves({"g": (list(range(6)), y)}, tmp_path / "c.png", "d", "norm", "t", log_y=True)
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert bottom > 1e-300 and bottom == pytest.approx(1e-20 / 2) and top == pytest.approx(2e14)
    labels = tick_texts(ax.yaxis)
    assert labels and all("10^{" in label and "times" not in label for label in labels)


def test_a_narrow_log_axis_reads_as_plain_numbers(tmp_path):
    """layer_gradients.png had labelled its ticks 5.5×10^-1."""
    fig = plots.curves(
        {"layer 0": ([0, 1, 2], [0.41, 0.55, 0.62])}, tmp_path / "n.png", "k", "g", "t", log_y=True
    )
    labels = tick_texts(fig.axes[0].yaxis)
    assert labels and all(label.replace(".", "").isdigit() for label in labels), labels
    assert axes.log_tick_style(0.2, 1.0) == "1-9" and axes.log_tick_style(0.01, 0.5) == "1-2-5"
    assert axes.log_tick_style(1e-30, 1.0) == "decades" and axes.plain_number(0.55) == "0.55"


def test_long_titles_are_wrapped_not_clipped(tmp_path):
    title = "Products of step Jacobians ∂(h, c)_j/∂(h, c)_(j+1): LSTM, layer 1, backward direction"
    assert len(axes.wrap_title(title, 7).splitlines()) == 2
    fig = plots.curves({"a": ([0, 1], [1.0, 2.0])}, tmp_path / "t.png", "x", "y", title)
    fig.canvas.draw()
    box = fig.axes[0].title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height


def test_steps_and_distances_get_whole_number_ticks(tmp_path):
    """A short input's distances 0..3 read 0, 1, 2, 3 (matplotlib's default put 0.0, 0.5,
    1.0 ... there); x values that are not whole numbers keep the default ticks."""
    y = [1.0, 0.5, 0.25, 0.1]
    fig = plots.curves({"g": (list(range(4)), y)}, tmp_path / "d.png", "d", "norm", "t", log_y=True)
    ticks = tick_texts(fig.axes[0].xaxis)
    assert ticks and all(t.lstrip("−-").isdigit() for t in ticks)
    fig = plots.curves({"g": ([0.0, 0.25, 0.5], [1.0, 2.0, 3.0])}, tmp_path / "f.png", "x", "y", "t")
    assert any("." in t for t in tick_texts(fig.axes[0].xaxis))
