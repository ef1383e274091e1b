"""Plots of predictions, written as PNG and SVG (matplotlib, no display needed)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from models.errors import ConfigError  # noqa: E402

FORMATS = ("png", "svg")
#: The parts of the mean iteration time, bottom to top in stacked bars.
BREAKDOWN = ("compute", "communication", "waiting")
BREAKDOWN_COLORS = ("tab:green", "tab:orange", "tab:red")
BREAKDOWN_LABELS = {"compute": "compute", "communication": "exposed communication",
                    "waiting": "waiting (stragglers, barriers, queues)"}
#: Varied fields that change the GPU count, which is the x axis rather than a series.
GPU_COUNT_FIELDS = ("cluster.nodes", "cluster.gpus_per_node")


def save_figure(figure, directory: Path | str, stem: str) -> list[Path]:
    """``stem``.png and ``stem``.svg in ``directory``, each written whole (write, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS:
        target = directory / f"{stem}.{fmt}"
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=f".{fmt}")
        os.close(handle)
        try:
            figure.savefig(temporary, format=fmt, bbox_inches="tight", dpi=120)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(target)
    plt.close(figure)
    return written


def plot_prediction(prediction, directory: Path | str) -> list[Path]:
    """Iteration-time distribution and breakdown, straggler/staleness distribution and,
    when time to accuracy is known, progress against simulated wall-clock."""
    curve = prediction.accuracy.curve if prediction.accuracy is not None else None
    return plot_prediction_tables(prediction.summary(), prediction.run.iterations,
                                  prediction.run.staleness, curve, directory)


def plot_prediction_tables(summary: dict, iterations: pd.DataFrame, staleness: pd.Series,
                           curve: pd.DataFrame | None, directory: Path | str) -> list[Path]:
    """:func:`plot_prediction` from a prediction's summary and tables (as
    ``Prediction.write`` saves them)."""
    title = (f"{summary['workload']} on {summary['gpus']} x {summary['gpu']}, "
             f"{summary['algorithm']}")
    written = []

    duration_ms = (iterations["end_s"] - iterations["start_s"]) * 1e3
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(duration_ms, bins=40, color="tab:blue")
    left.set_xlabel("iteration time per worker (ms)")
    left.set_ylabel("iterations")
    left.set_title("iteration time distribution")
    parts = summary["iteration_time_breakdown_s"]
    bottom = 0.0
    for name, color in zip(BREAKDOWN, BREAKDOWN_COLORS, strict=True):
        value = parts[name]
        right.bar(["mean iteration"], [value * 1e3], bottom=[bottom], color=color, label=name)
        bottom += value * 1e3
    right.set_ylabel("time (ms)")
    right.set_title("iteration time breakdown")
    right.legend()
    figure.suptitle(title)
    written += save_figure(figure, directory, "iteration_time")

    if len(staleness):
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.hist(staleness, bins=range(int(staleness.max()) + 2), color="tab:purple")
        axes.set_xlabel("staleness of an update (model versions)")
        axes.set_ylabel("updates")
        axes.set_title(title)
        written += save_figure(figure, directory, "staleness")

    if curve is not None and len(curve):
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(curve["time_s"] / 3600, curve["proxy_test_accuracy"], color="tab:blue")
        axes.set_xlabel("simulated wall-clock (hours); the curve ends at the target "
                        f"{summary['target']}")
        axes.set_ylabel("held-out accuracy of the proxy problem")
        axes.set_title(title + "\nconvergence replayed on the proxy, time scaled to the "
                       "workload", fontsize=9)
        written += save_figure(figure, directory, "accuracy_vs_time")
    return written


# ---------------------------------------------------------------------------------------
# Directories


def plot_directory(directory: Path | str, out: Path | str | None = None) -> list[Path]:
    """The plots of a sweep directory (sweep.json) or of a prediction directory
    (prediction.json), written to ``out`` (default: ``directory``/plots)."""
    directory = Path(directory)
    out = Path(out) if out is not None else directory / "plots"
    if (directory / "sweep.json").is_file() and (directory / "sweep.csv").is_file():
        return plot_sweep(directory, out)
    if (directory / "prediction.json").is_file():
        return plot_prediction_directory(directory, out)
    raise ConfigError("DIR", str(directory), "a directory written by 'ddlsim sweep --out' "
                      "(with sweep.json and sweep.csv) or 'ddlsim predict --out' (with "
                      "prediction.json)")


def plot_prediction_directory(directory: Path | str, out: Path | str) -> list[Path]:
    directory = Path(directory)
    summary = json.loads((directory / "prediction.json").read_text(encoding="utf-8"))
    iterations = pd.read_csv(directory / "iterations.csv")
    staleness_table = pd.read_csv(directory / "staleness.csv")
    staleness = (staleness_table["staleness"] if "staleness" in staleness_table
                 else pd.Series([], dtype=int))
    curve_path = directory / "accuracy_curve.csv"
    curve = pd.read_csv(curve_path) if curve_path.is_file() else None
    return plot_prediction_tables(summary, iterations, staleness, curve, out)


def plot_sweep(directory: Path | str, out: Path | str) -> list[Path]:
    """Every sweep plot whose data the sweep has (see :func:`plot_directory`)."""
    written: list[Path] = []
    for figure, stem in sweep_figures(directory):
        written += save_figure(figure, out, stem)
    return written


def sweep_figures(directory: Path | str) -> list[tuple[Any, str]]:
    """(figure, file stem) of each sweep plot whose data the sweep has."""
    from simulator.sweep import load_sweep_dir

    directory = Path(directory)
    definition, table = load_sweep_dir(directory)
    ok = table[table["status"] == "ok"]
    if ok.empty:
        raise ConfigError("DIR", str(directory), "a sweep with at least one successful "
                          "point (see the error_message column of sweep.csv)")
    series = _series(ok, [entry["field"] for entry in definition["vary"]])
    context = _sweep_context(ok)
    figures = []
    for plot in (_plot_scaling, _plot_breakdown, _plot_time_to_accuracy,
                 _plot_accuracy_curves, _plot_iteration_times, _plot_staleness):
        drawn = plot(directory, series, context)
        if drawn is not None:
            figures.append(drawn)
    return figures


class _Series:
    """Points that differ only in GPU count: one line, or one panel."""

    def __init__(self, label: str, points: pd.DataFrame):
        self.label = label
        self.points = points.sort_values("gpus", kind="stable")


def _series(ok: pd.DataFrame, varied: list[str]) -> tuple[list[_Series], str]:
    by = [name for name in varied if name not in GPU_COUNT_FIELDS and name in ok]
    if not by:
        algorithms = sorted(ok["algorithm"].unique())
        return [_Series(name, ok[ok["algorithm"] == name]) for name in algorithms], "algorithm"
    groups = []
    for values, points in ok.groupby(by, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        if len(by) == 1:
            label = str(values[0])
        else:
            label = ", ".join(f"{name.split('.')[-1]}={value}"
                              for name, value in zip(by, values, strict=True))
        groups.append(_Series(label, points))
    title = by[0] if len(by) == 1 else ", ".join(by)
    return groups, title


def _sweep_context(ok: pd.DataFrame) -> str:
    """What every point shares, for titles: workload and GPU type when there is one."""
    workloads = sorted(ok["workload"].astype(str).unique())
    gpus = sorted(ok["gpu"].astype(str).unique())
    return f"{', '.join(workloads)} on {', '.join(gpus)}"


def _gpu_axis(axes, counts) -> None:
    counts = sorted({int(count) for count in counts})
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(FixedLocator(counts))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([str(count) for count in counts])
    axes.set_xlabel("GPUs (log2 scale)")


def _plain_log_y(axes) -> None:
    """Plain numbers on a log y axis (``0.2``, ``50,000``, not ``2 x 10^-1``): every tick
    labelled within one decade, 1-2-5 within two, powers of ten beyond."""
    low, high = axes.get_ylim()
    decades = math.log10(high / low) if low > 0 else math.inf
    shown = range(1, 10) if decades <= 1 else (1, 2, 5) if decades <= 2 else (1,)

    def text(value: float, _position=None) -> str:
        if value <= 0:
            return ""
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9), 6)
        if mantissa not in shown:
            return ""
        return f"{value:,.0f}" if value >= 1e4 else f"{value:g}"

    axes.yaxis.set_major_formatter(FuncFormatter(text))
    axes.yaxis.set_minor_formatter(FuncFormatter(text))


def _legend(axes, title: str) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(title=title, fontsize=8, title_fontsize=8)


def _panels(count: int, width: float = 4.6, height: float = 3.6, sharey: bool = False):
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                                squeeze=False, sharey=sharey)
    for extra in grid.flat[count:]:
        extra.set_visible(False)
    return figure, list(grid.flat[:count])


def _plot_scaling(directory, series_title, context):
    series, title = series_title
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    counts = []
    for one in series:
        points = one.points
        counts += list(points["gpus"])
        left.plot(points["gpus"], points["throughput_samples_per_s"], marker="o",
                  label=one.label)
        right.plot(points["gpus"], points["scaling_efficiency"] * 100, marker="o",
                   label=one.label)
    for axes in (left, right):
        _gpu_axis(axes, counts)
        axes.grid(True, alpha=0.3)
    left.set_yscale("log")
    _plain_log_y(left)
    left.set_ylabel("training throughput (samples/s, log scale)")
    left.set_title("throughput")
    right.axhline(100, color="grey", linestyle="--", linewidth=1, label="ideal (100%)")
    right.set_ylabel("scaling efficiency (%)")
    right.set_ylim(bottom=0)
    right.set_title("scaling efficiency: throughput over\n(GPUs x one GPU's compute-only "
                    "throughput)", fontsize=10)
    _legend(left, title)
    _legend(right, title)
    figure.suptitle(f"{context}: throughput and scaling efficiency against GPU count")
    figure.tight_layout()
    return figure, "scaling"


def _plot_breakdown(directory, series_title, context):
    series, title = series_title
    figure, panels = _panels(len(series), sharey=True)
    for axes, one in zip(panels, series, strict=True):
        points = one.points
        positions = np.arange(len(points))
        bottom = np.zeros(len(points))
        for name, color in zip(BREAKDOWN, BREAKDOWN_COLORS, strict=True):
            values = points[f"iteration_time_breakdown_s.{name}"].fillna(0).to_numpy() * 1e3
            axes.bar(positions, values, bottom=bottom, color=color,
                     label=BREAKDOWN_LABELS[name])
            bottom += values
        axes.set_xticks(positions, [str(int(g)) for g in points["gpus"]])
        axes.set_xlabel("GPUs")
        axes.set_ylabel("mean iteration time per worker (ms)")
        axes.set_title(f"{title} = {one.label}" if title != "algorithm" else one.label)
        axes.grid(True, axis="y", alpha=0.3)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=9,
                  bbox_to_anchor=(0.5, -0.02))
    figure.suptitle(f"{context}: where the iteration time goes")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure, "iteration_breakdown"


def _plot_time_to_accuracy(directory, series_title, context):
    series, title = series_title
    if all(one.points["time_to_accuracy_s"].isna().all() for one in series):
        return None
    use_cost = any(one.points["cost_usd"].notna().any() for one in series)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    counts, missing = [], []
    for one in series:
        points = one.points
        counts += list(points["gpus"])
        known = points[points["time_to_accuracy_s"].notna()]
        missing += [f"{one.label} at {int(g)} GPUs" for g in
                    points.loc[points["time_to_accuracy_s"].isna(), "gpus"]]
        left.plot(known["gpus"], known["time_to_accuracy_s"] / 3600, marker="o",
                  label=one.label)
        column = "cost_usd" if use_cost else "gpu_hours"
        right.plot(known["gpus"], known[column], marker="o", label=one.label)
    for axes in (left, right):
        _gpu_axis(axes, counts)
        axes.set_yscale("log")
        _plain_log_y(axes)
        axes.grid(True, which="both", alpha=0.3)
        _legend(axes, title)
    targets = sorted(pd.concat([one.points["target"] for one in series]).astype(str).unique())
    left.set_ylabel("time to accuracy (hours, log scale)")
    left.set_title(f"time to {', '.join(targets)}")
    right.set_ylabel("cost to accuracy (USD, log scale)" if use_cost
                     else "GPU-hours to accuracy (log scale)")
    right.set_title("cost" if use_cost else "GPU-hours")
    figure.suptitle(f"{context}: time and cost to the target against GPU count")
    if missing:
        figure.text(0.5, -0.02, "no time to accuracy (no convergence or no gradients): "
                    + "; ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""),
                    ha="center", fontsize=8)
    figure.tight_layout()
    return figure, "time_to_accuracy"


def _gpu_colors(counts):
    counts = sorted({int(count) for count in counts})
    cmap = plt.get_cmap("viridis")
    if len(counts) == 1:
        return {counts[0]: cmap(0.4)}
    logs = np.log2(counts)
    span = logs[-1] - logs[0]
    return {count: cmap(0.9 * (value - logs[0]) / span) for count, value
            in zip(counts, logs, strict=True)}


def _plot_accuracy_curves(directory, series_title, context):
    from simulator.sweep import point_table

    series, title = series_title
    curves = [(one, [(row, point_table(directory, row["key"], "accuracy_curve"))
                     for _, row in one.points.iterrows()]) for one in series]
    if not any(curve is not None and len(curve) for _, rows in curves for _, curve in rows):
        return None
    colors = _gpu_colors(pd.concat([one.points["gpus"] for one in series]))
    figure, panels = _panels(len(series), sharey=True)
    targets = set()
    for axes, (one, rows) in zip(panels, curves, strict=True):
        for row, curve in rows:
            if curve is None or not len(curve):
                continue
            targets.add(str(row["target"]))
            gpus = int(row["gpus"])
            time_h = curve["time_s"].to_numpy() / 3600
            keep = time_h > 0
            axes.plot(time_h[keep], curve["proxy_test_accuracy"].to_numpy()[keep],
                      color=colors[gpus], label=f"{gpus}")
        axes.set_xscale("log")
        axes.set_xlabel("simulated wall-clock (hours, log scale)")
        axes.set_ylabel("held-out accuracy of the proxy problem")
        axes.set_title(f"{title} = {one.label}" if title != "algorithm" else one.label)
        axes.grid(True, which="both", alpha=0.3)
        _legend(axes, "GPUs")
    figure.suptitle(f"{context}: progress against wall-clock (each curve ends at the "
                    f"target {', '.join(sorted(targets))})\nconvergence replayed on the "
                    "proxy problem, time scaled to the workload", fontsize=10)
    figure.tight_layout()
    return figure, "accuracy_vs_time"


def _plot_iteration_times(directory, series_title, context):
    from simulator.sweep import point_table

    series, title = series_title
    figure, panels = _panels(len(series))
    drawn = False
    for axes, one in zip(panels, series, strict=True):
        samples, labels = [], []
        for _, row in one.points.iterrows():
            table = point_table(directory, row["key"], "iteration_times")
            if table is None or not len(table):
                continue
            samples.append(table["iteration_time_s"].to_numpy() * 1e3)
            labels.append(str(int(row["gpus"])))
        if samples:
            drawn = True
            axes.boxplot(samples, whis=(1, 99), showfliers=True,
                         flierprops={"markersize": 2, "alpha": 0.5})
            axes.set_xticks(np.arange(1, len(labels) + 1), labels)
        axes.set_xlabel("GPUs")
        axes.set_ylabel("iteration time per worker (ms)")
        axes.set_title(f"{title} = {one.label}" if title != "algorithm" else one.label)
        axes.grid(True, axis="y", alpha=0.3)
    if not drawn:
        plt.close(figure)
        return None
    figure.suptitle(f"{context}: iteration time distribution (stragglers); box: quartiles, "
                    "whiskers: 1st and 99th percentiles", fontsize=10)
    figure.tight_layout()
    return figure, "iteration_time_distribution"


def _plot_staleness(directory, series_title, context):
    from simulator.sweep import point_table

    series, title = series_title
    with_staleness = []
    for one in series:
        rows = []
        for _, row in one.points.iterrows():
            table = point_table(directory, row["key"], "staleness")
            if table is not None and table["updates"].sum() > 0:
                rows.append((row, table))
        if rows:
            with_staleness.append((one, rows))
    if not with_staleness:
        return None
    colors = _gpu_colors(pd.concat([one.points["gpus"] for one in series]))
    figure, panels = _panels(len(with_staleness), sharey=True)
    for axes, (one, rows) in zip(panels, with_staleness, strict=True):
        for row, table in rows:
            gpus = int(row["gpus"])
            share = table["updates"] / table["updates"].sum() * 100
            axes.step(table["staleness"], share, where="mid", color=colors[gpus],
                      label=f"{gpus}")
        axes.set_xlabel("staleness of an update (model versions behind)")
        axes.set_ylabel("share of updates (%)")
        axes.set_title(f"{title} = {one.label}" if title != "algorithm" else one.label)
        axes.grid(True, alpha=0.3)
        _legend(axes, "GPUs")
    figure.suptitle(f"{context}: staleness distribution of asynchronous updates",
                    fontsize=10)
    figure.tight_layout()
    return figure, "staleness_distribution"
