"""Plots of predictions, written as PNG and SVG (matplotlib, no display needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FORMATS = ("png", "svg")


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
    summary = prediction.summary()
    title = (f"{summary['workload']} on {summary['gpus']} x {summary['gpu']}, "
             f"{summary['algorithm']}")
    written = []

    iterations = prediction.run.iterations
    duration_ms = (iterations["end_s"] - iterations["start_s"]) * 1e3
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(duration_ms, bins=40, color="tab:blue")
    left.set_xlabel("iteration time per worker (ms)")
    left.set_ylabel("iterations")
    left.set_title("iteration time distribution")
    parts = summary["iteration_time_breakdown_s"]
    bottom = 0.0
    for (name, value), color in zip(parts.items(), ("tab:green", "tab:orange", "tab:red"),
                                    strict=True):
        right.bar(["mean iteration"], [value * 1e3], bottom=[bottom], color=color, label=name)
        bottom += value * 1e3
    right.set_ylabel("time (ms)")
    right.set_title("iteration time breakdown")
    right.legend()
    figure.suptitle(title)
    written += save_figure(figure, directory, "iteration_time")

    staleness = prediction.run.staleness
    if len(staleness):
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.hist(staleness, bins=range(int(staleness.max()) + 2), color="tab:purple")
        axes.set_xlabel("staleness of an update (model versions)")
        axes.set_ylabel("updates")
        axes.set_title(title)
        written += save_figure(figure, directory, "staleness")

    if prediction.accuracy is not None and len(prediction.accuracy.curve):
        curve = prediction.accuracy.curve
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(curve["time_s"] / 3600, curve["proxy_test_accuracy"], color="tab:blue")
        axes.set_xlabel("simulated wall-clock (hours); the curve ends at the target "
                        f"{summary['target']}")
        axes.set_ylabel("held-out accuracy of the proxy problem")
        axes.set_title(title + "\nconvergence replayed on the proxy, time scaled to the "
                       "workload", fontsize=9)
        written += save_figure(figure, directory, "accuracy_vs_time")
    return written
