"""Plots shared by the analysis commands: annotated heatmaps and curves against the timestep t.

Matplotlib runs on the Agg backend, so plots are written to files on machines without a display.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINESTYLES = ("-", "--", "-.", ":")


def heatmap(values: list[list[float]], row_labels: list, col_labels: list, path: str | Path, title: str = "",
            xlabel: str = "", ylabel: str = "", colorbar: str = "", fmt: str = "{:.3f}") -> Path:
    """values[i][j] as coloured cells, each annotated with its value; NaN cells stay blank."""
    rows, cols = len(row_labels), len(col_labels)
    cell = min(1.3, 12 / max(1, cols))  # narrower cells when there are many columns, so the figure stays readable
    fig, ax = plt.subplots(figsize=(1.6 + cell * cols, max(3.0, 1.2 + 0.45 * rows)), layout="constrained")
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=colorbar)
    ax.set_xticks(range(cols), [str(c) for c in col_labels], rotation=30, ha="right")
    ax.set_yticks(range(rows), [str(r) for r in row_labels])
    low, high = image.get_clim()
    for i, line in enumerate(values):
        for j, value in enumerate(line):
            if value == value:  # not NaN
                bright = high > low and (value - low) / (high - low) > 0.6
                ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                        color="black" if bright else "white")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def curves_vs_t(panels: list[tuple[str, dict[str, tuple[list, list]]]], path: str | Path, title: str = "",
                hlines: list[tuple[int, float, str, str]] = (), linthresh: float = 10.0, logy: bool = False) -> Path:
    """One panel per (y label, {curve label: (ts, ys)}), on a symlog t axis (t = 0 stays visible), log y if asked.

    Curve labels "A | B" share a colour per A and a line style per B; hlines are horizontal
    baselines (panel index, y, label, line style).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), layout="constrained", squeeze=False)
    colours, styles = {}, {}
    for ax, (ylabel, curves) in zip(axes[0], panels):
        for label, (ts, ys) in curves.items():
            first, _, second = label.partition(" | ")
            colour = colours.setdefault(first, f"C{len(colours) % 10}")
            style = styles.setdefault(second, LINESTYLES[len(styles) % len(LINESTYLES)])
            ax.plot(ts, ys, marker="o", markersize=3, color=colour, linestyle=style, label=label)
        ax.set_xscale("symlog", linthresh=linthresh)
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel="timestep t", ylabel=ylabel)
        ax.grid(alpha=0.3)
    for panel, y, label, style in hlines:
        axes[0][panel].axhline(y, color="black", linestyle=style, linewidth=1.0, alpha=0.7, label=label)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def grouped_bars(groups: dict[str, dict[str, tuple[float, float]]], path: str | Path, ylabel: str = "",
                 title: str = "") -> Path:
    """One group of bars per outer key, one bar per inner key, each (value, error bar), value printed on top."""
    names = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    width = 0.8 / max(1, len(names))
    width_in = max(5.5, 1.5 + 0.6 * len(groups) * max(1, len(names)))  # room for the title with one group
    fig, ax = plt.subplots(figsize=(width_in, 4), layout="constrained")
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        values = [bars.get(name, (float("nan"), 0.0)) for bars in groups.values()]
        drawn = ax.bar(xs, [v for v, _ in values], width, yerr=[e for _, e in values], capsize=3, label=name,
                       color=f"C{i % 10}")
        ax.bar_label(drawn, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), list(groups))
    low = min((v - e for bars in groups.values() for v, e in bars.values() if v == v), default=0)
    ax.set_ylim(bottom=max(0.0, low - 5))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    # under the axes: inside, it hides bars; beside them, long variant names squeeze the axes under their title
    fig.legend(fontsize=7, loc="outside lower center", ncols=min(2, len(names)))
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def curves(series: dict[str, tuple[list, list]], path: str | Path, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Lines on linear axes, one per {label: (xs, ys)}."""
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, marker="o", markersize=3, color=f"C{i % 10}", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
