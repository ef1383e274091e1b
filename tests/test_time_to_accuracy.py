"""Time to accuracy: schedule continuation, closed forms of the sync path, the measured
factor's anchors (one worker, fresh reads), and the prediction pipeline end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from models import emulation as em
from models.errors import ConfigError
from simulator import accuracy as acc
from simulator.cli import main
from simulator.predict import SUMMARY_FIELDS, predict
from simulator.scenario import load_scenario


def test_continued_push_log_keeps_each_rows_staleness():
    log = em.push_log(50, 8)  # staleness 7 in steady state
    continued = acc.continue_log(log, 400, period_s=10.0)
    assert len(continued) == 400
    # Each copy repeats the original rows' lags, the first workers' fresh reads included.
    index = np.arange(400)
    steady = index % 50 >= 7
    read = continued["read_version"].to_numpy()
    assert (read[steady] == index[steady] - 7).all()
    assert (read[~steady] == (index - index % 50)[~steady]).all()
    assert continued["time_s"].iloc[50] == pytest.approx(log["time_s"].iloc[0] + 10.0)
    assert (continued["worker"].to_numpy() == np.arange(400) % 50 % 8).all()


def test_continued_log_keeps_exchanges_between_gradient_rows():
    log = em.local_sgd_log(4, 2, 3)  # 12 local rows and one average per round
    continued = acc.continue_log(log, 40, period_s=6.0)
    consumes = continued["kind"].eq("local").sum()
    assert consumes == 40
    assert continued["kind"].eq("average").sum() == 3  # after 12, 24 and 36 local rows


def test_log_without_gradients_is_refused():
    log = em.synchronous_log(3).assign(kind="average")
    with pytest.raises(ConfigError, match="update_log"):
        acc.continue_log(log, 10, period_s=1.0)


def law(batch):
    return 1000.0 * (1.0 + batch / 100.0)


def test_synchronous_time_to_accuracy_is_samples_over_throughput():
    result = acc.time_to_accuracy(
        samples_at_batch=law, algorithm="allreduce", update_log=em.synchronous_log(10),
        workers=4, batch_per_worker=25, global_batch=100, throughput_samples_per_s=50.0,
        simulated_time_s=20.0, gpus=4, price_per_gpu_hour_usd=3.0)
    assert result.schedule_factor == 1.0
    assert result.samples_to_target == pytest.approx(2000.0)
    assert result.time_to_accuracy_s == pytest.approx(40.0)
    assert result.gpu_hours == pytest.approx(40.0 * 4 / 3600)
    assert result.cost_usd == pytest.approx(result.gpu_hours * 3.0)
    assert result.curve["time_s"].iloc[-1] == pytest.approx(40.0)


def test_no_price_no_cost():
    result = acc.time_to_accuracy(
        samples_at_batch=law, algorithm="allreduce", update_log=em.synchronous_log(10),
        workers=1, batch_per_worker=10, global_batch=10, throughput_samples_per_s=5.0,
        simulated_time_s=2.0, gpus=1, price_per_gpu_hour_usd=None)
    assert result.cost_usd is None


def test_one_asynchronous_worker_is_plain_sgd():
    # One worker reading its own last update is plain SGD on the same minibatches.
    factor, _ = acc.schedule_factor(em.push_log(100, 1), 1, "ps-async", 100.0)
    assert factor == pytest.approx(1.0)


def test_asynchronous_updates_use_one_workers_batch():
    result = acc.time_to_accuracy(
        samples_at_batch=law, algorithm="ps-async", update_log=em.push_log(100, 1),
        workers=1, batch_per_worker=20, global_batch=20, throughput_samples_per_s=10.0,
        simulated_time_s=200.0, gpus=1, price_per_gpu_hour_usd=None)
    assert result.samples_per_update == 20
    assert result.samples_to_target == pytest.approx(law(20) * result.schedule_factor)


def test_heavy_staleness_costs_updates():
    # 128 equal workers: every gradient is 127 versions old in steady state.
    mild, _ = acc.schedule_factor(em.push_log(400, 4), 4, "ps-async", 10.0)
    heavy, _ = acc.schedule_factor(em.push_log(12800, 128), 128, "ps-async", 10.0)
    assert heavy > 1.5 * mild


def every_rate_on_the_whole_log(update_log, workers, algorithm, period_s, options):
    """schedule_factor's definition, each rate and seed replayed on the whole log."""
    emulation_options = {"alpha": 0.9 / workers} if algorithm == "easgd" else {}
    if algorithm == "gossip":
        emulation_options["gossip"] = options["variant"]
    batch = acc.reference_batch(algorithm, workers)
    reference = min(acc._reference_samples(lr, batch) for lr in acc.PROXY_LRS)
    budget = math.ceil(acc.PROXY_MAX_FACTOR * reference / acc.PROXY_BATCH_PER_WORKER)
    log = acc.continue_log(update_log, budget, period_s)
    every = workers if algorithm in acc.PARALLEL_MODELS else 1
    traces = {(lr, seed): acc._replay(log, workers, acc.PROXY_BATCH_PER_WORKER, lr, seed,
                                      emulation_options, every)
              for lr in acc.PROXY_LRS for seed in acc.PROXY_SEEDS}
    per_rate = {lr: np.mean([acc._gradient_updates(log, traces[lr, seed])
                             for seed in acc.PROXY_SEEDS]) for lr in acc.PROXY_LRS}
    best = min(acc.PROXY_LRS, key=per_rate.__getitem__)
    return (acc.PROXY_BATCH_PER_WORKER * per_rate[best] / reference,
            traces[best, acc.PROXY_SEEDS[0]])


def _ring_gossip_log(workers, rounds):
    rows = []
    for step in range(rounds):
        for w in range(workers):
            rows.append((float(step), w, "local", -1, -1, step))
            peer = (w + 1 + step % (workers - 1)) % workers
            rows.append((step + 0.5, w, "gossip", -1, peer, step))
    return pd.DataFrame(rows, columns=list(em.LOG_COLUMNS))


@pytest.mark.parametrize("log, workers, algorithm, options", [
    (em.push_log(160, 8), 8, "ps-async", {}),
    (em.local_sgd_log(8, 10, 4), 8, "local-sgd", {}),
    (_ring_gossip_log(8, 10), 8, "gossip", {"variant": "push"}),
])
def test_cut_off_replays_choose_the_rate_and_factor_of_whole_replays(
        log, workers, algorithm, options):
    factor, trace = acc.schedule_factor(log, workers, algorithm, 10.0, options)
    expected_factor, expected_trace = every_rate_on_the_whole_log(log, workers, algorithm,
                                                                  10.0, options)
    assert math.isfinite(factor)
    assert factor == expected_factor
    assert trace.drop(columns="gradient_updates").equals(expected_trace)


@pytest.fixture(scope="module")
def default_prediction():
    return predict(load_scenario("default", ["run.iterations=20"]))


def test_default_prediction_has_every_summary_field(default_prediction):
    summary = default_prediction.summary()
    for field in SUMMARY_FIELDS:
        assert field in summary
    breakdown = summary["iteration_time_breakdown_s"]
    assert sum(breakdown.values()) == pytest.approx(summary["iteration_time_s"], rel=1e-9)
    # Synchronous: steps of the law at the global batch, times the mean iteration time.
    steps = summary["samples_to_target"] / summary["global_batch"]
    assert summary["time_to_accuracy_s"] == pytest.approx(
        steps * summary["global_batch"] / summary["throughput_samples_per_s"])
    assert summary["gpu_hours"] == pytest.approx(summary["time_to_accuracy_s"] * 16 / 3600)


def test_same_scenario_same_prediction(default_prediction):
    again = predict(load_scenario("default", ["run.iterations=20"]))
    assert again.summary() == default_prediction.summary()


def test_batch_beyond_the_recipe_reports_why():
    scenario = load_scenario("default", ["run.iterations=2", "cluster.nodes=64",
                                         "workload.batch_per_gpu=256"])
    prediction = predict(scenario)
    assert prediction.accuracy is None
    assert "global_batch" in prediction.accuracy_note
    assert prediction.summary()["time_to_accuracy_s"] is None


def test_cli_predict_json_and_out(tmp_path, capsys):
    assert main(["predict", "--json", "--set", "run.iterations=5", "--out",
                 str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    for field in SUMMARY_FIELDS:
        assert field in printed
    assert printed["cost_usd"] is None or printed["cost_usd"] > 0
    for name in ("iterations.csv", "update_log.csv", "prediction.json", "scenario.toml",
                 "iteration_time.png", "iteration_time.svg", "accuracy_curve.csv"):
        assert (tmp_path / name).is_file()
    assert load_scenario(tmp_path / "scenario.toml").run.iterations == 5


def test_cli_predict_table(capsys):
    assert main(["predict", "--set", "run.iterations=5"]) == 0
    out = capsys.readouterr().out
    assert "time to accuracy" in out and "scaling efficiency" in out
    assert "framework host time" not in out  # PyTorch, the default, takes none


def test_a_frameworks_host_time_is_reported_inside_compute(capsys):
    from models import compute

    overhead_s = compute.defaults_table()["iteration_overhead_ms"]["mxnet-module"] * 1e-3
    scenario = load_scenario("default", ["run.iterations=5", "workload.framework=mxnet-module"])
    summary = predict(scenario).summary()
    assert summary["host_overhead_s"] == pytest.approx(overhead_s) and overhead_s > 0
    assert summary["iteration_time_breakdown_s"]["compute"] > overhead_s
    assert main(["predict", "--set", "run.iterations=5", "--set",
                 "workload.framework=mxnet-module"]) == 0
    assert "framework host time" in capsys.readouterr().out


def test_cli_bad_override_names_the_field(capsys):
    assert main(["predict", "--set", "cluster.nodez=2"]) == 2
    err = capsys.readouterr().err
    assert "cluster.nodez" in err and "nodes" in err


def test_time_to_accuracy_is_finite_for_default(default_prediction):
    assert math.isfinite(default_prediction.summary()["time_to_accuracy_s"])
