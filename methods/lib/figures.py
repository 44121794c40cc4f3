"""Labelled figures: every map drawn with a colour bar over its real range, titles that name the
class and its probability, legends where colours mean something.

Figures are rendered off-screen with matplotlib's Agg canvas (no pyplot, no global state) into
uint8 RGB arrays, which results save as PNG and ``Result.plot()`` shows. matplotlib is imported
only here, when a figure is drawn.
"""

import textwrap
from collections import namedtuple

import numpy as np

from methods.lib.images import require

__all__ = ["Panel", "bars", "curves", "figure", "scatter", "table", "value_range"]

#: One panel: ``title``; ``image`` (uint8 H x W x 3 or H x W) shown as it is; ``values`` (a 2-D
#: map) drawn with ``cmap`` and a colour bar from ``low`` to ``high`` (default: the map's own
#: min and max; ``symmetric`` makes it -m..m, grey = 0 for signed maps) labelled ``label``; with
#: both, the map is laid over the image with opacity ``alpha`` (stretched to the image, smoothly
#: when ``smooth``). An ``image`` already coloured from a range (a grid of feature maps) gets
#: its colour bar from ``cmap``, ``low`` and ``high`` alone. ``legend``: [(uint8 RGB colour,
#: text)] drawn under the panel. ``rows``: one label per row of ``values`` (a matrix whose rows
#: are named, e.g. classes), written beside them.
Panel = namedtuple("Panel", ["title", "image", "values", "cmap", "low", "high", "label", "alpha", "symmetric",
                             "smooth", "legend", "rows"],
                   defaults=(None, None, "viridis", None, None, None, 0.5, False, False, None, None))


def _canvas(width, height):
    Figure = require("matplotlib.figure", "drawing figures").Figure
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "drawing figures").FigureCanvasAgg
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _pixels(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def value_range(panel):
    """(low, high) of the colour bar a panel's ``values`` are drawn with."""
    values = np.asarray(panel.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low = panel.low if panel.low is not None else (finite.min() if finite.size else 0.0)
    high = panel.high if panel.high is not None else (finite.max() if finite.size else 1.0)
    if panel.symmetric:
        bound = max(abs(low), abs(high)) or 1.0
        low, high = -bound, bound
    if high <= low:  # a constant map: show its value in the middle of a small range
        pad = abs(low) * 1e-3 or 1e-3
        low, high = low - pad, high + pad
    return float(low), float(high)


def _draw(axis, panel):
    axis.set_xticks([])
    axis.set_yticks([])
    shown = None
    extent = None
    if panel.image is not None:
        image = np.asarray(panel.image)
        h, w = image.shape[:2]
        extent = (-0.5, w - 0.5, h - 0.5, -0.5)
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest",
                    extent=extent)
    if panel.values is not None:
        low, high = value_range(panel)
        values = np.asarray(panel.values, dtype=np.float64)
        if extent is None:
            h, w = values.shape
            extent = (-0.5, w - 0.5, h - 0.5, -0.5)
        shown = axis.imshow(values, cmap=panel.cmap, vmin=low, vmax=high, extent=extent,
                            alpha=panel.alpha if panel.image is not None else None,
                            interpolation="bilinear" if panel.smooth else "nearest")
        bar = axis.figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03, format=_bar_format(low, high))
        bar.ax.tick_params(labelsize=7)
        if panel.label:
            bar.set_label(panel.label, fontsize=8)
    if panel.values is None and panel.low is not None and panel.high is not None:
        colors = require("matplotlib.colors", "drawing figures")
        cm = require("matplotlib.cm", "drawing figures")
        mappable = cm.ScalarMappable(colors.Normalize(panel.low, panel.high), panel.cmap)
        bar = axis.figure.colorbar(mappable, ax=axis, fraction=0.046, pad=0.03,
                                   format=_bar_format(panel.low, panel.high))
        bar.ax.tick_params(labelsize=7)
        if panel.label:
            bar.set_label(panel.label, fontsize=8)
    if panel.rows is not None:
        axis.set_yticks(np.arange(len(panel.rows)))
        axis.set_yticklabels(panel.rows, fontsize=7)
    if panel.legend:
        patches = require("matplotlib.patches", "drawing figures")
        handles = [patches.Patch(color=np.asarray(colour) / 255.0, label=text) for colour, text in panel.legend]
        axis.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, frameon=False,
                    ncol=1 if len(handles) <= 4 else 2)
    axis.set_title(panel.title, fontsize=9)


def _bar_format(low, high):
    """A colour bar's tick format with enough significant digits that ticks over a narrow range
    far from zero (0.001130 to 0.001145) read apart: 3, plus one per decade the span is below the
    largest magnitude."""
    top, span = max(abs(low), abs(high)), abs(high - low)
    extra = int(np.ceil(np.log10(top / span))) if top > 0 and span > 0 else 0
    return f"%.{3 + max(0, extra)}g"


def _wrap(title, width):
    """``title`` broken into lines that fit ``width`` inches at 10 points (about 13 characters
    per inch), keeping the line breaks it has."""
    chars = max(20, int(width * 13))
    return "\n".join(textwrap.fill(line, chars) for line in str(title).split("\n"))


def figure(panels, columns=None, title=None, size=2.8):
    """Draw :class:`Panel` s in a grid (``columns`` per row) under ``title``: uint8 (H, W, 3).

    ``size``: each panel's width in inches at 100 dpi, or "native" to show the widest picture
    pixel for pixel (grids of tiles with small labels)."""
    panels = list(panels)
    if not panels:
        raise ValueError("a figure needs at least one panel")
    columns = min(columns or len(panels), len(panels))
    rows = -(-len(panels) // columns)
    bars = any(p.values is not None or p.low is not None for p in panels)
    shapes = [np.shape(p.image if p.image is not None else p.values)[:2] for p in panels]
    aspect = max(h / w for h, w in shapes)  # tall or wide pictures get a figure of their shape
    if size == "native":
        size = min(max(max(w for _, w in shapes) / 100 + 0.3, 5.0), 16.0)
    legend = 0.4 if any(p.legend for p in panels) else 0.0
    width = columns * size * (1.25 if bars else 1.0)
    title = _wrap(title, width) if title else title
    lines = title.count("\n") + 1 if title else 0
    fig = _canvas(width, rows * (size * aspect + 0.45 + legend) + (0.35 + 0.18 * (lines - 1) if title else 0))
    axes = fig.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis, panel in zip(axes.flat, panels):
        _draw(axis, panel)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _pixels(fig)


def scatter(points, groups, names, title=None, thumbnails=None, size=6.0):
    """A 2-D embedding: ``points`` (N, 2) coloured by ``groups`` (N ints indexing ``names``), with
    a legend; ``thumbnails`` (N uint8 images) are drawn at their points instead of dots, framed
    in their group's colour. Returns uint8 (H, W, 3)."""
    points = np.asarray(points, dtype=np.float64)
    groups = np.asarray(groups)
    fig = _canvas(size + 2.2, size)
    axis = fig.add_subplot(1, 1, 1)
    colormap = require("matplotlib", "drawing figures").colormaps["tab10" if len(names) <= 10 else "tab20"]
    colours = [colormap(i % colormap.N) for i in range(len(names))]
    if thumbnails is not None:
        offsetbox = require("matplotlib.offsetbox", "drawing figures")
        span = np.ptp(points, axis=0).max() or 1.0
        zoom = 0.9 * size * 100 / (np.sqrt(len(points)) * 1.6 * max(np.asarray(thumbnails[0]).shape[:2]))
        for (x, y), g, thumb in zip(points, groups, thumbnails):
            box = offsetbox.AnnotationBbox(offsetbox.OffsetImage(thumb, zoom=zoom, cmap="gray"), (x, y), frameon=True,
                                           pad=0.05, bboxprops=dict(edgecolor=colours[g], linewidth=1.2))
            axis.add_artist(box)
        axis.set_xlim(points[:, 0].min() - 0.05 * span, points[:, 0].max() + 0.05 * span)
        axis.set_ylim(points[:, 1].min() - 0.05 * span, points[:, 1].max() + 0.05 * span)
    lines = require("matplotlib.lines", "drawing figures")
    handles = []
    for g, name in enumerate(names):
        chosen = groups == g
        if thumbnails is None and chosen.any():
            axis.scatter(points[chosen, 0], points[chosen, 1], s=8, color=colours[g])
        handles.append(lines.Line2D([], [], marker="o", linestyle="", color=colours[g], markersize=6,
                                    label=f"{name} ({int(chosen.sum())})"))
    legend = axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    legend.set_title("class", prop={"size": 8})
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=10)
    fig.tight_layout()
    return _pixels(fig)


def curves(series, title=None, xlabel="step", ylabel="loss", log=False, size=(5.0, 3.2), x=None, ticks=None,
           shade=None, logx=False):
    """Line plots of ``series`` ({label: values}) on one axis, with a legend. uint8 (H, W, 3).

    ``x``: the abscissae shared by every series (default 0, 1, 2, ...), or {label: abscissae};
    up to 40 points are marked when ``x`` or ``ticks`` is given. ``ticks``: a name for each x position
    (layer names), written under the axis. ``shade``: (low, high, text) an x-interval drawn as a
    labelled band (e.g. a training range); ``log`` / ``logx``: logarithmic y / x axis."""
    fig = _canvas(*size)
    axis = fig.add_subplot(1, 1, 1)
    if shade is not None:
        axis.axvspan(shade[0], shade[1], color="0.9", label=shade[2])
    for label, values in series.items():
        xs = x.get(label) if isinstance(x, dict) else x
        xs = np.arange(len(values)) if xs is None else np.asarray(xs, dtype=np.float64)
        axis.plot(xs, np.asarray(values, dtype=np.float64), label=label,
                  marker=None if len(values) > 40 else "o" if x is not None else "." if ticks else None)
    if log:
        axis.set_yscale("log")
    if logx:
        axis.set_xscale("log")
    if ticks is not None:
        axis.set_xticks(np.arange(len(ticks)), [str(t) for t in ticks], rotation=90, fontsize=6)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.tick_params(labelsize=7)
    if len(series) > 1 or shade is not None:
        axis.legend(fontsize=7)
    if title:
        axis.set_title(title, fontsize=9)
    fig.tight_layout()
    return _pixels(fig)


def table(header, rows, title=None, width=None):
    """``rows`` of values under ``header`` drawn as a table (numbers with 4 significant digits).
    uint8 (H, W, 3)."""
    text = [[f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row] for row in rows]
    width = width or max(3.0, 1.1 * len(header))
    fig = _canvas(width, 0.3 * (len(text) + 1) + (0.5 if title else 0.2))
    axis = fig.add_subplot(1, 1, 1)
    axis.axis("off")
    drawn = axis.table(cellText=text, colLabels=[str(h) for h in header], loc="center", cellLoc="right")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for (row, _), cell in drawn.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
    if title:
        axis.set_title(title, fontsize=9)
    fig.tight_layout()
    return _pixels(fig)


def bars(series, categories, title=None, ylabel="value", size=(6.0, 3.4), low=None, high=None):
    """Grouped bars: ``series`` ({label: one value per category}) side by side over each of the
    ``categories``, each value written on its bar, with a legend. uint8 (H, W, 3)."""
    fig = _canvas(*size)
    axis = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(categories))
    for i, (label, values) in enumerate(series.items()):
        drawn = axis.bar(positions + (i - (len(series) - 1) / 2) * width, np.asarray(values, np.float64), width,
                         label=label)
        axis.bar_label(drawn, fmt="%.2g", fontsize=6)
    axis.set_xticks(positions, [str(c) for c in categories], fontsize=7, rotation=20 if len(categories) > 5 else 0)
    axis.set_ylim(low, high)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.tick_params(axis="y", labelsize=7)
    if len(series) > 1:
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(series), frameon=False)
    if title:
        axis.set_title(title, fontsize=9)
    fig.tight_layout()
    return _pixels(fig)
