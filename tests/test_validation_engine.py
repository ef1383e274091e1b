"""Engine-backed predictors of ``ddlsim validate`` against closed forms."""

import math

import pandas as pd
import pytest

from models import catalog, compute, convergence, workloads
from simulator import validation
from simulator.cli import main

COLUMNS = list(validation.REQUIRED_COLUMNS)


def _row(**fields):
    row = dict.fromkeys(COLUMNS, None)
    row.update(id="t1", source="A table — detail", quantity="throughput", value=100.0,
               model="resnet18", batch_per_gpu=32, precision="fp16", gpu="v100-sxm2",
               gpus_total=1, gpus_per_node=8, intra_link="nvlink2", algorithm="allreduce")
    row.update(fields)
    return pd.Series(row)


def _predict(quantity, **fields):
    return validation.PREDICTORS[quantity](_row(quantity=quantity, **fields)).value


def _compute_only_s(model, gpu, batch, precision):
    """Forward, backward and update of one GPU, straight from the compute model."""
    return compute.iteration_compute_time_s(workloads.workload(model), catalog.gpu(gpu),
                                            batch, precision)


def test_one_gpu_throughput_and_iteration_time_are_the_compute_model():
    iteration_s = _compute_only_s("resnet18", "v100-sxm2", 32, "fp16")
    assert _predict("iteration_time") == pytest.approx(iteration_s, rel=1e-9)
    assert _predict("throughput") == pytest.approx(32 / iteration_s, rel=1e-9)


def test_scaling_efficiency_of_one_gpu_is_one():
    assert _predict("scaling_efficiency", gpus_total=1) == pytest.approx(1.0, rel=1e-12)


def test_scaling_efficiency_is_throughput_over_n_single_gpus():
    one = _predict("throughput", gpus_total=1)
    eight = _predict("throughput", gpus_total=8)
    efficiency = _predict("scaling_efficiency", gpus_total=8)
    assert efficiency == pytest.approx(eight / (8 * one), rel=1e-12)
    # Eight GPUs on one NVLink node lose a little to the exposed all-reduce, never gain.
    assert 0.5 < efficiency < 1.0


def test_multi_gpu_throughput_is_global_batch_over_iteration_time():
    iteration_s = _predict("iteration_time", gpus_total=16, gpus_per_node=8,
                           inter_link="ib-edr", nics_per_node=4)
    throughput = _predict("throughput", gpus_total=16, gpus_per_node=8, inter_link="ib-edr",
                          nics_per_node=4)
    assert throughput == pytest.approx(16 * 32 / iteration_s, rel=1e-9)
    assert iteration_s > _compute_only_s("resnet18", "v100-sxm2", 32, "fp16")


def test_gradient_accumulation_repeats_forward_and_backward_before_one_update():
    table = compute.layer_times(workloads.workload("resnet18"), catalog.gpu("v100-sxm2"), 32,
                                "fp16")
    micro_s = table[["forward_s", "backward_input_s", "backward_weight_s"]].to_numpy().sum()
    update_s = table["update_s"].sum()
    iteration_s = _predict("iteration_time", accumulation_steps=4)
    assert iteration_s == pytest.approx(4 * micro_s + update_s, rel=1e-9)
    assert _predict("throughput", accumulation_steps=4) == pytest.approx(128 / iteration_s,
                                                                         rel=1e-9)


def test_forward_backward_rows_time_the_passes_without_the_update():
    table = compute.layer_times(workloads.workload("resnet18"), catalog.gpu("v100-sxm2"), 32,
                                "fp16")
    passes_s = table[["forward_s", "backward_input_s", "backward_weight_s"]].to_numpy().sum()
    assert table["update_s"].sum() > 0
    predicted = _predict("iteration_time", phases="forward+backward")
    assert predicted == pytest.approx(passes_s, rel=1e-9)
    assert _predict("iteration_time", phases="step") == pytest.approx(
        passes_s + table["update_s"].sum(), rel=1e-9)
    assert _predict("throughput", phases="forward+backward") == pytest.approx(
        32 / passes_s, rel=1e-9)


def test_time_to_train_is_steps_times_iteration_plus_evaluations():
    # 8 epochs of ImageNet on one GPU: steps and evaluations in closed form.
    batch = 256
    table = compute.layer_times(workloads.workload("resnet50"), catalog.gpu("a100-sxm4-80gb"),
                                batch, "tf32")
    iteration_s = table[["forward_s", "backward_input_s", "backward_weight_s",
                         "update_s"]].to_numpy().sum()
    steps = 8 * 1_281_167 / batch
    evaluations = 2  # every 4 epochs
    evaluation_s = evaluations * 50_000 * table["forward_s"].sum() / batch
    predicted = _predict("time_to_train", model="resnet50", batch_per_gpu=batch,
                         precision="tf32", gpu="a100-sxm4-80gb", intra_link="nvlink3",
                         target="epochs=8")
    assert predicted == pytest.approx(steps * iteration_s + evaluation_s, rel=1e-9)


def test_time_to_train_uses_the_convergence_law_at_the_global_batch():
    fields = dict(model="resnet50", batch_per_gpu=256, precision="fp16", gpu="a100-sxm4-80gb",
                  intra_link="nvlink3", gpus_total=8, target="top1=0.759")
    setup = validation.row_setup(_row(quantity="time_to_train", **fields))
    parts = validation.time_to_train_parts(setup, "top1=0.759", validation.Simulations())
    assert parts["steps"] == pytest.approx(
        convergence.steps_to_target("resnet50", 2048, "top1=0.759"), rel=1e-12)
    iteration_s = _predict("iteration_time", **fields)
    assert parts["training_s"] == pytest.approx(parts["steps"] * iteration_s, rel=1e-9)
    assert _predict("time_to_train", **fields) == pytest.approx(parts["total_s"], rel=1e-12)


@pytest.mark.parametrize(("quantity", "fields", "reason"), [
    ("throughput", {"batch_per_gpu": None},
     "unsupported: batch_per_gpu is empty: the source does not state it"),
    ("throughput", {"algorithm": "carrier-pigeon"},
     "unsupported: algorithm 'carrier-pigeon' is not in the engine yet"),
    ("throughput", {"precision": "tf32"}, "unsupported: precision: 'tf32'"),
    ("throughput", {"model": "resnet9000"}, "unsupported: model: 'resnet9000'"),
    ("time_to_train", {"target": None}, "unsupported: target is empty"),
    ("time_to_train", {"target": "top1=0.759"},
     "unsupported: no convergence model for 'resnet18'"),
    ("time_to_train", {"model": "resnet50", "gpus_total": 8, "batch_per_gpu": 16384,
                       "target": "top1=0.759"}, "unsupported: global_batch: 131072"),
    ("iteration_time", {"accumulation_steps": 0.5},
     "unsupported: accumulation_steps 0.5 is not a positive integer"),
    ("throughput", {"servers": 2},
     "unsupported: servers is set but algorithm 'allreduce' has no such option"),
    ("throughput", {"algorithm": "ps-sync", "servers": 0},
     "unsupported: servers 0.0 is not a positive integer"),
    ("throughput", {"algorithm": "ps-sync", "aggregation": "rack"},
     "unsupported: algorithm.aggregation: 'rack'"),
    ("iteration_time", {"phases": "backward"},
     "unsupported: phases 'backward' is not one of step, forward+backward"),
    ("throughput", {"phases": "forward+backward", "gpus_total": 8},
     "unsupported: phases 'forward+backward' is for one-GPU rows"),
    ("scaling_efficiency", {"phases": "forward+backward"},
     "unsupported: phases 'forward+backward': scaling_efficiency is made of whole"),
])
def test_unsupported_rows_carry_the_reason(quantity, fields, reason):
    row = _row(quantity=quantity, **fields)
    status = validation.predict_rows(pd.DataFrame([row]))["status"].iloc[0]
    assert status.startswith(reason)


def test_parameter_server_rows_take_their_servers_and_aggregation():
    # Two nodes of four GPUs over 10 GbE: pushing one summed gradient per node moves a
    # quarter of the bytes per-GPU pushes do, so the step is faster.
    fields = {"algorithm": "ps-sync", "gpus_total": 8, "gpus_per_node": 4,
              "inter_link": "eth-10g", "model": "vgg16", "servers": 2}
    per_gpu = _predict("throughput", **fields)
    per_node = _predict("throughput", aggregation="node", **fields)
    assert per_node > 1.5 * per_gpu
    one_server = _predict("throughput", **{**fields, "servers": 1})
    assert one_server < per_gpu
    # The one-GPU reference of a scaling efficiency has one colocated server.
    assert 0.0 < _predict("scaling_efficiency", aggregation="node", **fields) < 1.0


def test_documented_defaults_fill_an_empty_field_and_say_so():
    row = _row(source="Horovod docs benchmarks.md — 16-GPU benchmark", batch_per_gpu=None)
    rows = validation.predict_rows(pd.DataFrame([row]))
    assert rows["status"].iloc[0] == "ok"
    assert "batch_per_gpu empty: 64" in rows["assumptions"].iloc[0]
    iteration_s = _compute_only_s("resnet18", "v100-sxm2", 64, "fp16")
    assert rows["predicted"].iloc[0] == pytest.approx(64 / iteration_s, rel=1e-9)


def test_engine_rows_in_rows_csv(tmp_path):
    data = tmp_path / "rows.csv"
    pd.DataFrame([
        _row(id="a", quantity="scaling_efficiency", gpus_total=8, value=0.9),
        _row(id="b", quantity="iteration_time", value=0.05),
        _row(id="c", quantity="time_to_train", value=3600.0),
    ]).to_csv(data, index=False)
    assert main(["validate", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    written = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert list(written.columns[:6]) == ["id", "source", "quantity", "measured", "predicted",
                                         "error_pct"]
    assert {"status", "assumptions"} <= set(written.columns)
    status = dict(zip(written["id"], written["status"], strict=True))
    assert status["a"] == "ok" and status["b"] == "ok"
    assert status["c"] == "unsupported: target is empty"
    error = written.set_index("id").loc["b"]
    assert error["error_pct"] == pytest.approx(100 * (error["predicted"] / 0.05 - 1))
    assert not math.isnan(error["predicted"])


def _summary(sigma, iterations=validation.ENGINE_ITERATIONS, **fields):
    simulations = validation.Simulations(iterations=iterations, jitter_sigma=sigma)
    return simulations.summary(validation.row_setup(_row(**fields)))


def test_jitter_leaves_one_gpu_alone():
    # One worker waits for nobody: with a mean-1 factor its expected step is nominal.
    simulations = validation.Simulations(jitter_sigma=0.1)
    row = _row(quantity="scaling_efficiency", gpus_total=1)
    assert simulations.scaling_efficiency(row).value == pytest.approx(1.0, rel=1e-12)
    iteration_s = _compute_only_s("resnet18", "v100-sxm2", 32, "fp16")
    assert simulations.iteration_time(row).value == pytest.approx(iteration_s, rel=1e-9)


def test_jitter_stretches_a_synchronous_step_by_the_expected_max_of_n():
    # Compute-bound on one NVLink node: the step grows by the forward and backward time
    # times E[max of 8 log-normal factors] - 1, the mean wait for the slowest worker.
    # 800 steps bring the sample mean within about 2% of that.
    from simulator.stragglers import LogNormal, expected_max

    sigma, fields = 0.1, {"gpus_total": 8, "model": "resnet50", "batch_per_gpu": 128}
    nominal_s = _summary(0.0, **fields)["iteration_time_mean_s"]
    noisy_s = _summary(sigma, iterations=800, **fields)["iteration_time_mean_s"]
    table = compute.layer_times(workloads.workload("resnet50"), catalog.gpu("v100-sxm2"), 128,
                                "fp16")
    compute_s = table[["forward_s", "backward_input_s", "backward_weight_s"]].to_numpy().sum()
    expected_extra_s = (expected_max(LogNormal(sigma), 8) - 1.0) * compute_s
    assert expected_extra_s / nominal_s > 0.1
    assert noisy_s - nominal_s == pytest.approx(expected_extra_s, rel=0.05)


def test_shared_jitter_is_plausible_and_lowers_scaling_efficiency():
    assert 0.01 <= validation.COMPUTE_JITTER_SIGMA <= 0.2
    row = _row(quantity="scaling_efficiency", gpus_total=8)
    noise_free = validation.Simulations(jitter_sigma=0.0).scaling_efficiency(row).value
    assert validation.PREDICTORS["scaling_efficiency"](row).value < noise_free


def test_negative_jitter_is_a_config_error():
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="jitter_sigma"):
        validation.Simulations(jitter_sigma=-0.1)


@pytest.mark.parametrize("fields, framework, note", [
    ({}, "pytorch", "framework pytorch: the default"),
    ({"framework": "mxnet"}, "mxnet", ""),
    ({"framework": "MXNet 1.8"}, "mxnet", "framework 'MXNet 1.8' read as mxnet"),
    ({"source": "MLPerf Training v3.0 result log — epoch 5"}, "nvidia-mlperf",
     "framework nvidia-mlperf: named in the source"),
    ({"framework": "jax", "source": "A TensorFlow table — detail"}, "tensorflow",
     "'jax' is none of"),
])
def test_row_framework_comes_from_the_column_then_the_source(fields, framework, note):
    row = _row(**fields)
    chosen, assumptions = validation.row_framework(row)
    assert chosen == framework
    assert note in "; ".join(assumptions)
    times = compute.iteration_compute_time_s(workloads.workload("resnet18"),
                                             catalog.gpu("v100-sxm2"), 32, "fp16",
                                             framework=framework)
    rows = validation.predict_rows(pd.DataFrame([row]))
    assert rows["predicted"].iloc[0] == pytest.approx(32 / times, rel=1e-9)


def test_rows_name_the_framework_each_training_row_ran_under():
    rows = validation.predict_rows(pd.DataFrame([
        _row(id="a", framework="mxnet"),
        _row(id="b", source="MLPerf Training v3.1 result log — epoch 5"),
        _row(id="c", quantity="allreduce_busbw", message_bytes=2**20),
    ]))
    assert rows["framework"].tolist() == ["mxnet", "nvidia-mlperf", ""]
