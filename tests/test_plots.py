"""ddlsim plot: the sweep plots and the per-prediction plots, as PNG and SVG files whose
axes, titles and legends say what they show."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from models.errors import ConfigError
from simulator.cli import main
from simulator.plots import plot_directory, sweep_figures
from simulator.predict import predict
from simulator.scenario import load_scenario
from simulator.sweep import make_sweep, run_sweep

SWEEP_PLOTS = ("scaling", "iteration_breakdown", "time_to_accuracy", "accuracy_vs_time",
               "iteration_time_distribution", "staleness_distribution")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    definition = make_sweep("default", ["cluster.nodes=1,2", "algorithm.collective=ring,tree"],
                            ["run.iterations=5"])
    table = run_sweep(definition, out, workers=2)
    assert (table["status"] == "ok").all()
    # All-reduce has no staleness; give one point a distribution so that plot is drawn.
    key = table["key"].iloc[0]
    pd.DataFrame({"staleness": [0, 1, 2], "updates": [5, 3, 2]}).to_csv(
        out / "points" / f"{key}.staleness.csv", index=False)
    return out


def test_sweep_plots_are_written_as_png_and_svg(sweep_dir, capsys):
    assert main(["plot", str(sweep_dir)]) == 0
    printed = capsys.readouterr().out.split()
    for stem in SWEEP_PLOTS:
        png = sweep_dir / "plots" / f"{stem}.png"
        svg = sweep_dir / "plots" / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert svg.read_text()[:200].lstrip().startswith("<?xml")
        assert str(png) in printed and str(svg) in printed
    assert not list((sweep_dir / "plots").glob(".*"))  # no temporary files left


@pytest.fixture(scope="module")
def figures(sweep_dir):
    drawn = {stem: figure for figure, stem in sweep_figures(sweep_dir)}
    yield drawn
    for figure in drawn.values():
        plt.close(figure)


def test_sweep_figures_label_every_axis(figures):
    assert set(figures) == set(SWEEP_PLOTS)
    for stem, figure in figures.items():
        assert figure.get_suptitle(), stem
        for axes in figure.axes:
            if axes.get_visible():
                assert axes.get_xlabel() and axes.get_ylabel() and axes.get_title(), stem
    scaling = figures["scaling"].axes[0]
    assert scaling.get_xscale() == "log" and "log2" in scaling.get_xlabel()
    assert "samples/s" in scaling.get_ylabel()
    assert scaling.get_legend().get_title().get_text() == "algorithm.collective"
    breakdown = figures["iteration_breakdown"].axes
    assert len(breakdown) == 2 and "ms" in breakdown[0].get_ylabel()
    assert "hours" in figures["time_to_accuracy"].axes[0].get_ylabel()


def test_scaling_lines_are_the_sweep_table(figures, sweep_dir):
    # One line per series (the varied field that is not the GPU count), one point per GPU
    # count, at the throughput sweep.csv holds.
    table = pd.read_csv(sweep_dir / "sweep.csv")
    lines = {line.get_label(): line for line in figures["scaling"].axes[0].get_lines()}
    assert sorted(lines) == ["ring", "tree"]
    for name, line in lines.items():
        points = table[table["algorithm.collective"] == name].sort_values("gpus")
        assert list(line.get_xdata()) == [8, 16]
        assert list(line.get_ydata()) == pytest.approx(
            points["throughput_samples_per_s"].tolist(), rel=1e-12)
    # The stacked bars of the first panel add up to the mean iteration time.
    ring = table[table["algorithm.collective"] == "ring"].sort_values("gpus")
    bars = figures["iteration_breakdown"].axes[0].patches
    tops = sorted({(round(bar.get_x(), 6), bar.get_y() + bar.get_height()) for bar in bars})
    totals = {}
    for x, top in tops:
        totals[x] = max(totals.get(x, 0.0), top)
    assert list(totals.values()) == pytest.approx((ring["iteration_time_s"] * 1e3).tolist(),
                                                  rel=1e-9)


def test_prediction_directory_gets_the_prediction_plots(tmp_path):
    prediction = predict(load_scenario("default", ["cluster.nodes=1", "run.iterations=5"]))
    prediction.write(tmp_path)
    written = plot_directory(tmp_path, tmp_path / "figures")
    names = sorted(path.name for path in written)
    assert names == ["accuracy_vs_time.png", "accuracy_vs_time.svg",
                     "iteration_time.png", "iteration_time.svg"]


def test_plot_refuses_a_directory_without_results(tmp_path, capsys):
    with pytest.raises(ConfigError):
        plot_directory(tmp_path)
    assert main(["plot", str(tmp_path)]) == 2
    assert "DIR" in capsys.readouterr().err
