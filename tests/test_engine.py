"""Engine: synchronous all-reduce against closed forms; results, determinism, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from engine_cases import ScriptedFailures, costs, harmonic

from models import collectives
from models.emulation import LOG_COLUMNS
from models.errors import ConfigError
from simulator.costs import Costs
from simulator.engine import simulate
from simulator.recorder import ITERATION_COLUMNS
from simulator.stragglers import Exponential, LogNormal, StragglerModel, expected_max


def _ends(result):
    return result.iterations.groupby("iteration")["end_s"].max().to_numpy()


def test_no_noise_no_overlap_iteration_k_ends_at_k_times_compute_plus_allreduce():
    c = costs()
    result = simulate(c, "allreduce", iterations=5,
                      options={"overlap": False, "bucket_mb": 1e6})
    allreduce_s = collectives.allreduce_time_s(c.model_bytes, c.cluster)
    period = c.iteration_compute_s + allreduce_s
    np.testing.assert_allclose(_ends(result), period * np.arange(1, 6), rtol=1e-12)
    assert result.summary["iteration_time_mean_s"] == pytest.approx(period)
    assert result.summary["communication_s"] == pytest.approx(allreduce_s)
    assert result.summary["waiting_s"] == pytest.approx(0.0, abs=1e-15)


def test_buckets_without_overlap_add_up():
    c = costs(gradient_bytes=20 * 2**20)
    buckets = c.buckets(25.0)
    # 20 MiB layers in 25 MiB buckets: two layers per bucket.
    assert [b.layers for b in buckets] == [(3, 2), (1, 0)]
    result = simulate(c, "allreduce", iterations=3, options={"overlap": False})
    period = c.iteration_compute_s + sum(collectives.allreduce_time_s(b.size_bytes, c.cluster)
                                         for b in buckets)
    np.testing.assert_allclose(_ends(result), period * np.arange(1, 4), rtol=1e-12)


def test_overlap_lies_between_max_and_sum():
    c = costs(layers=8, gradient_bytes=100 * 2**20)
    comm = sum(c.allreduce_time_s(b.size_bytes) for b in c.buckets(25.0))
    result = simulate(c, "allreduce", iterations=3)
    period = result.summary["iteration_time_mean_s"]
    assert max(c.iteration_compute_s, comm) < period < c.iteration_compute_s + comm
    no_overlap = simulate(c, "allreduce", iterations=3, options={"overlap": False})
    assert no_overlap.summary["iteration_time_mean_s"] == pytest.approx(
        c.iteration_compute_s + comm)


def test_lognormal_noise_mean_iteration_is_expected_max():
    c = costs(nodes=4, gpus_per_node=8)
    noise = LogNormal(0.3)
    result = simulate(c, "allreduce", iterations=300, options={"overlap": False},
                      stragglers=StragglerModel(noise=noise), seed=3)
    comm = sum(c.allreduce_time_s(b.size_bytes) for b in c.buckets(25.0))
    expected = c.gradient_compute_s * expected_max(noise, 32) + comm + c.update_total_s
    assert result.summary["iteration_time_mean_s"] == pytest.approx(expected, rel=0.02)


def test_exponential_barrier_waits_m_times_harmonic_number():
    c = costs(nodes=2, gpus_per_node=8)
    result = simulate(c, "allreduce", iterations=1000, options={"overlap": False},
                      stragglers=StragglerModel(noise=Exponential(1.0)), seed=1)
    m = c.gradient_compute_s
    comm = sum(c.allreduce_time_s(b.size_bytes) for b in c.buckets(25.0))
    barrier = result.summary["iteration_time_mean_s"] - comm - c.update_total_s
    assert barrier == pytest.approx(m * harmonic(16), rel=0.04)
    # A worker waits for the slowest: E[max] - E[own] = m (H_N - 1).
    assert result.summary["waiting_s"] == pytest.approx(m * (harmonic(16) - 1), rel=0.06)


def test_breakdown_adds_up_and_columns():
    result = simulate(costs(), "allreduce", iterations=4,
                      stragglers=StragglerModel(noise=LogNormal(0.2)), seed=5)
    frame = result.iterations
    assert list(frame.columns) == list(ITERATION_COLUMNS)
    assert len(frame) == 4 * 8
    parts = frame["compute_s"] + frame["communication_s"] + frame["waiting_s"]
    np.testing.assert_allclose(parts, frame["end_s"] - frame["start_s"], rtol=1e-9)
    assert (frame[["compute_s", "communication_s", "waiting_s"]] >= -1e-12).all().all()
    log = result.update_log
    assert list(log.columns) == list(LOG_COLUMNS)
    assert (log["kind"] == "sync").all() and list(log["read_version"]) == [0, 1, 2, 3]
    assert result.staleness.empty and result.summary["staleness_mean"] is None


def test_same_seed_same_result_and_a_new_worker_leaves_draws_alone():
    model = StragglerModel(noise=LogNormal(0.3))
    a = simulate(costs(1, 8), "allreduce", iterations=5, stragglers=model, seed=7)
    b = simulate(costs(1, 8), "allreduce", iterations=5, stragglers=model, seed=7)
    pd.testing.assert_frame_equal(a.iterations, b.iterations)
    pd.testing.assert_frame_equal(a.update_log, b.update_log)
    assert a.summary == b.summary
    c = simulate(costs(1, 8), "allreduce", iterations=5, stragglers=model, seed=8)
    assert not np.allclose(a.iterations["compute_s"], c.iterations["compute_s"])
    bigger = simulate(costs(1, 9), "allreduce", iterations=5, stragglers=model, seed=7)
    mine = bigger.iterations[bigger.iterations["worker"] < 8].reset_index(drop=True)
    np.testing.assert_array_equal(mine["compute_s"], a.iterations["compute_s"])


def test_single_gpu_scaling_efficiency_is_one():
    c = costs(1, 1)
    result = simulate(c, "allreduce", iterations=3)
    assert result.summary["scaling_efficiency"] == pytest.approx(1.0)
    assert result.summary["throughput_samples_per_s"] == pytest.approx(
        c.single_gpu_throughput_samples_per_s)


def test_one_failure_stalls_synchronous_training_by_the_restart():
    c = costs()
    period = c.iteration_compute_s + sum(c.allreduce_time_s(b.size_bytes)
                                         for b in c.buckets(25.0))
    restart_s = 0.5
    base = simulate(c, "allreduce", iterations=10, options={"overlap": False})
    # Worker 3 fails 10 ms into iteration 4's compute phase; that work is lost.
    failed = simulate(c, "allreduce", iterations=10, options={"overlap": False},
                      stragglers=ScriptedFailures(3, 4 * period + 0.01, restart_s))
    stall = failed.summary["simulated_time_s"] - base.summary["simulated_time_s"]
    assert stall == pytest.approx(restart_s + 0.01)
    assert failed.summary["failures"] == 1
    row = failed.iterations.query("iteration == 4 and worker == 0").iloc[0]
    assert row["waiting_s"] == pytest.approx(restart_s + 0.01)


def test_write_is_complete(tmp_path):
    result = simulate(costs(), "allreduce", iterations=2, seed=4)
    result.write(tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["iterations.csv", "meta.json", "staleness.csv", "summary.json",
                     "update_log.csv"]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["options"] == {"bucket_mb": 25.0, "overlap": True, "collective": "auto"}
    assert meta["seed"] == 4 and meta["algorithm"] == "allreduce" and meta["version"]
    back = pd.read_csv(tmp_path / "run" / "iterations.csv")
    pd.testing.assert_frame_equal(back, result.iterations, check_dtype=False)


@pytest.mark.parametrize("options, field", [
    ({"bucket_mb": -1.0}, "algorithm.bucket_mb"),
    ({"bucket_mb": "25"}, "algorithm.bucket_mb"),
    ({"overlap": "yes"}, "algorithm.overlap"),
    ({"collective": "butterfly"}, "algorithm.collective"),
    ({"collective": "nvls"}, "algorithm.collective"),
    ({"bucket_size": 25.0}, "algorithm.bucket_size"),
])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ConfigError) as error:
        simulate(costs(), "allreduce", iterations=1, options=options)
    assert error.value.field == field


def test_bad_run_inputs():
    with pytest.raises(ConfigError) as error:
        simulate(costs(), "alreduce", iterations=1)
    assert error.value.field == "algorithm.name" and error.value.suggestion == "allreduce"
    with pytest.raises(ConfigError) as error:
        simulate(costs(), "allreduce", iterations=0)
    assert error.value.field == "run.iterations"


def test_costs_from_models_resnet50():
    from models import catalog

    cluster = catalog.cluster("a100-sxm4-80gb", 2, 8, "nvlink4", "ib-ndr")
    c = Costs.from_models("resnet50", cluster, 64, "fp16")
    # ResNet-50: 25.6 M parameters, fp32 gradients.
    assert c.model_bytes == pytest.approx(25.557e6 * 4, rel=0.01)
    buckets = c.buckets(25.0)
    assert sum(b.size_bytes for b in buckets) == pytest.approx(c.model_bytes)
    assert all(b.size_bytes >= 25 * 2**20 for b in buckets[:-1])
    ready = [b.ready_s for b in buckets]
    assert ready == sorted(ready) and ready[-1] == pytest.approx(c.gradient_compute_s)
    assert ready[0] > c.forward_total_s
    with pytest.raises(ConfigError) as error:
        Costs.from_models("resnet50", cluster, 64, "fp8")
    assert error.value.field == "workload.precision"


def test_costs_record_the_frameworks_host_overhead_inside_the_step():
    from models import catalog, compute

    cluster = catalog.cluster("v100-sxm2", 1, 8, "nvlink2")
    plain = Costs.from_models("resnet50", cluster, 32, "fp32", None, framework="pytorch")
    module = Costs.from_models("resnet50", cluster, 32, "fp32", None,
                               framework="mxnet-module")
    overhead_s = compute.default_constants(cluster.gpu).iteration_overhead_s["mxnet-module"]
    assert plain.host_overhead_s == 0.0
    assert module.host_overhead_s == pytest.approx(overhead_s) and overhead_s > 0
    # Same kernels (both unfused NCHW in fp32); the step differs by the host time alone.
    assert module.iteration_compute_s == pytest.approx(plain.iteration_compute_s + overhead_s)
    assert module.describe()["host_overhead_s"] == pytest.approx(overhead_s)
