"""ddlsim sweep: the grid, point files, recorded failures, resume, the Dask path, bench."""

import argparse
import json
import os

import pandas as pd
import pytest

from models.errors import ConfigError
from simulator.cli import build_parser, main
from simulator.predict import predict
from simulator.scenario import load_scenario, with_overrides
from simulator.sweep import make_sweep, parse_vary, point_key, read_point

# Small and fast: 5 iterations of ResNet-50 on 1 or 2 nodes of 8 H200.
BASE = ["default", "--set", "run.iterations=5"]
GRID = ["--vary", "cluster.nodes=1,2", "--vary", "algorithm.bucket_mb=25,100"]


def sweep(out, *extra, grid=GRID):
    return main(["sweep", *BASE, *grid, "--out", str(out), "--workers", "2", *extra])


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    assert sweep(out) == 0
    return out


def test_vary_values_are_read_as_toml():
    assert parse_vary("cluster.nodes=1,2,4") == ("cluster.nodes", (1, 2, 4))
    assert parse_vary("cluster.gpu = h100-sxm, a100-sxm4-80gb") == (
        "cluster.gpu", ("h100-sxm", "a100-sxm4-80gb"))
    assert parse_vary("algorithm.bucket_mb=12.5,true") == ("algorithm.bucket_mb", (12.5, True))
    # A TOML list or a quoted string keeps its commas.
    assert parse_vary('x.y=[1, 2],"a,b"') == ("x.y", ([1, 2], "a,b"))


@pytest.mark.parametrize("text", ["cluster.nodes", "cluster.nodes=", "=1,2", "nodes=1,2",
                                  "cluster.nodes=1,,2", "cluster.nodes=1,1", "cluster..x=1"])
def test_bad_vary_is_a_config_error_naming_vary(text):
    with pytest.raises(ConfigError) as error:
        parse_vary(text)
    assert error.value.field == "--vary"


def test_bad_vary_on_the_command_line_exits_2_naming_vary(tmp_path, capsys):
    code = main(["sweep", "default", "--vary", "cluster.nodes", "--out", str(tmp_path)])
    assert code == 2
    assert "--vary" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()


def test_sweep_definition_refuses_conflicts():
    with pytest.raises(ConfigError, match="--vary"):
        make_sweep("default", [])
    with pytest.raises(ConfigError, match="twice"):
        make_sweep("default", ["cluster.nodes=1,2", "cluster.nodes=4"])
    with pytest.raises(ConfigError, match="--set"):
        make_sweep("default", ["cluster.nodes=1,2"], ["cluster.nodes=4"])


def test_point_keys_are_stable_and_tell_types_apart():
    # A fixed file name: the same on every run and platform (no Python hash()).
    assert point_key({"cluster.nodes": 8, "algorithm.name": "gossip"}) == \
        "nodes-8_name-gossip-fdfc435d"
    assert point_key({"cluster.nodes": 8}) == "nodes-8-752fcc60"
    assert point_key({"cluster.nodes": 1}) != point_key({"cluster.nodes": "1"})
    assert "/" not in point_key({"workload.target": "a/b c"})


def test_grid_writes_one_file_per_point_and_the_csv(grid_dir):
    points = sorted(p.name for p in (grid_dir / "points").glob("*.json"))
    assert len(points) == 4
    table = pd.read_csv(grid_dir / "sweep.csv")
    assert len(table) == 4
    assert list(table.columns[:4]) == ["key", "status", "cluster.nodes", "algorithm.bucket_mb"]
    for column in ("throughput_samples_per_s", "iteration_time_s", "scaling_efficiency",
                   "iteration_time_breakdown_s.compute",
                   "iteration_time_breakdown_s.communication",
                   "iteration_time_breakdown_s.waiting", "time_to_accuracy_s", "gpu_hours",
                   "gpus", "algorithm", "wall_s", "error_type", "error_message"):
        assert column in table.columns
    assert (table["status"] == "ok").all()
    # Grid order: the last --vary changes fastest.
    assert table["cluster.nodes"].tolist() == [1, 1, 2, 2]
    assert table["algorithm.bucket_mb"].tolist() == [25, 100, 25, 100]
    assert (table["gpus"] == 8 * table["cluster.nodes"]).all()
    definition = json.loads((grid_dir / "sweep.json").read_text())
    assert definition["vary"][0] == {"field": "cluster.nodes", "values": [1, 2]}
    assert definition["set"] == ["run.iterations=5"]
    for key in table["key"]:
        for suffix in ("accuracy_curve", "iteration_times", "staleness"):
            assert (grid_dir / "points" / f"{key}.{suffix}.csv").is_file()


def test_each_point_is_the_prediction_of_its_overrides(grid_dir):
    base = load_scenario("default", ["run.iterations=5"])
    table = pd.read_csv(grid_dir / "sweep.csv")
    row = table.iloc[3]
    record = read_point(grid_dir, row["key"])
    assert record["overrides"] == {"cluster.nodes": 2, "algorithm.bucket_mb": 100}
    assert record["scenario"]["cluster"]["nodes"] == 2
    assert record["scenario"]["algorithm"]["bucket_mb"] == 100.0
    direct = predict(with_overrides(base, {"cluster.nodes": 2, "algorithm.bucket_mb": 100}))
    expected = json.loads(json.dumps(direct.summary()))
    assert record["summary"] == expected
    assert row["throughput_samples_per_s"] == pytest.approx(
        expected["throughput_samples_per_s"], rel=1e-12)
    assert record["wall_s"] > 0


def test_failing_points_are_recorded_and_the_others_finish(tmp_path, capsys):
    grid = ["--vary", "cluster.nodes=1,2", "--vary", "algorithm.name=allreduce,no-such-algo"]
    assert sweep(tmp_path, grid=grid) == 1
    table = pd.read_csv(tmp_path / "sweep.csv")
    failed = table[table["algorithm.name"] == "no-such-algo"]
    assert (failed["status"] == "error").all() and len(failed) == 2
    assert (failed["error_type"] == "ConfigError").all()
    assert failed["error_message"].str.contains("algorithm.name").all()
    assert (table.loc[table["algorithm.name"] == "allreduce", "status"] == "ok").all()
    record = read_point(tmp_path, failed["key"].iloc[0])
    assert record["status"] == "error" and record["summary"] is None
    err = capsys.readouterr().err
    assert "algorithm.name=no-such-algo error ConfigError" in err

    # Resume runs nothing; --retry-errors runs only the failed points again.
    assert sweep(tmp_path, "--resume", grid=grid) == 1
    assert "[1/" not in capsys.readouterr().err
    assert sweep(tmp_path, "--resume", "--retry-errors", grid=grid) == 1
    err = capsys.readouterr().err
    assert "[2/2]" in err and "[3/" not in err
    assert "algorithm.name=allreduce" not in err.split("already written")[1]


def test_resume_runs_only_the_missing_point(tmp_path, capsys):
    assert sweep(tmp_path) == 0
    files = sorted((tmp_path / "points").glob("*.json"))
    removed = files[2]
    removed.unlink()
    kept = {path: path.stat().st_mtime_ns for path in files if path != removed}
    capsys.readouterr()
    assert sweep(tmp_path, "--resume") == 0
    err = capsys.readouterr().err
    assert "3 of 4 points already written" in err and "[1/1]" in err and "[2/" not in err
    assert removed.is_file()
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    assert (pd.read_csv(tmp_path / "sweep.csv")["status"] == "ok").all()


def test_resume_refuses_another_sweep(tmp_path, capsys):
    assert sweep(tmp_path, grid=["--vary", "cluster.nodes=1"]) == 0
    assert sweep(tmp_path, "--resume") == 2
    assert "--resume" in capsys.readouterr().err


def test_help_describes_every_argument(capsys):
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert parser.description, name
        for action in parser._actions:
            assert action.help, f"ddlsim {name} {action.dest}"
    for command in ("sweep", "plot", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: ddlsim " + command in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert all(name in top for name in ("sweep", "plot", "bench"))


def test_bench_quick_counts_events(capsys):
    assert main(["bench", "--quick", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    bare = results[0]
    # 100 processes x 100 timeouts, plus each process's start and end.
    assert 100 * 100 <= bare["events"] <= 100 * 102 + 1
    assert all(r["events"] > 0 and r["wall_s"] > 0 and r["events_per_s"] > 0 for r in results)
    assert results[1]["name"].startswith("allreduce: 16 GPUs")


def test_dask_cluster_gives_the_local_summaries(grid_dir, tmp_path):
    # Last in this file: the cluster's threads linger, and local sweeps only fork a
    # single-threaded process.
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        # Two of the grid's points (same overrides, so the same keys).
        code = main(["sweep", *BASE, "--vary", "cluster.nodes=1,2", "--vary",
                     "algorithm.bucket_mb=100", "--out", str(tmp_path),
                     "--scheduler", cluster.scheduler_address])
    assert code == 0
    local = pd.read_csv(grid_dir / "sweep.csv").set_index("key")
    remote = pd.read_csv(tmp_path / "sweep.csv")
    assert len(remote) == 2 and set(remote["key"]) <= set(local.index)
    for key in remote["key"]:
        assert read_point(tmp_path, key)["summary"] == read_point(grid_dir, key)["summary"]
        assert os.path.isfile(tmp_path / "points" / f"{key}.accuracy_curve.csv")
