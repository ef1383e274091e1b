"""Compute cost model: closed forms on hand-built layers, bad input, calibration loading."""

import json
import math

import pytest

from models import catalog, compute
from models.compute import ComputeConstants, GemmConstants
from models.efficiency import saturating_efficiency
from models.errors import ConfigError
from models.workloads import Layer, Workload

A100 = catalog.gpu("a100-sxm4-80gb")
V100 = catalog.gpu("v100-sxm2")
P100 = catalog.gpu("p100-sxm2")
K80 = catalog.gpu("k80")
M40 = catalog.gpu("m40")

TIME_COLUMNS = ["forward_s", "backward_input_s", "backward_weight_s", "update_s"]


def linear(name: str, m: int, n: int, k: int, kind: str = "linear") -> Layer:
    """A GEMM layer: per sample m rows of k inputs times a k x n weight."""
    return Layer(name, kind, params=n * k, forward_flops=2.0 * m * n * k,
                 input_elements=m * k, output_elements=m * n, gemm=(m, n, k))


def elementwise(name: str, kind: str, elements: int, params: int = 0) -> Layer:
    return Layer(name, kind, params=params, forward_flops=float(elements),
                 input_elements=elements, output_elements=elements)


def net(*layers: Layer) -> Workload:
    return Workload("test", "test", "test", tuple(layers), (1,), "none", 1, "hand-built")


def constants(**overrides) -> ComputeConstants:
    values = dict(memory_bandwidth_Bps=1e12, memory_half_bytes=0.0, kernel_launch_s=1e-9,
                  gemm={p: GemmConstants(0.8, 1e9) for p in ("fp32", "tf32", "fp16", "bf16")},
                  optimizer_update_Bps=5e11)
    values.update(overrides)
    return ComputeConstants(**values)


def test_columns_are_what_the_engine_consumes():
    times = compute.layer_times(net(linear("a", 64, 64, 64)), A100, 2, "fp32", None)
    assert list(times.columns) == list(compute.LAYER_TIME_COLUMNS)
    assert times["gradient_bytes"].tolist() == [64 * 64 * 4]


def test_big_gemm_runs_at_peak_times_saturating_efficiency():
    """Compute-bound GEMM: time = FLOP / (matrix peak x peak_fraction x flop/(flop+half))."""
    fixed = constants()
    batch = 8
    layers = net(linear("first", 512, 4096, 4096), linear("second", 512, 4096, 4096))
    times = compute.layer_times(layers, A100, batch, "fp16", fixed)
    flop = 2.0 * batch * 512 * 4096 * 4096
    expected = flop / (312e12 * 0.8 * flop / (flop + 1e9))
    assert times.loc[1, "forward_s"] == pytest.approx(expected, rel=1e-12)
    # Backward: an input-gradient and a weight-gradient GEMM of the forward's FLOP each;
    # the first layer of the network computes no input gradient.
    assert times.loc[1, "backward_input_s"] == pytest.approx(expected, rel=1e-12)
    assert times.loc[1, "backward_weight_s"] == pytest.approx(expected, rel=1e-12)
    assert times.loc[0, "backward_input_s"] == 0.0
    assert times.loc[0, "backward_weight_s"] == pytest.approx(expected, rel=1e-12)


def test_skinny_gemm_is_bound_by_its_bytes():
    """Roofline: an 8-wide GEMM moves far more bytes than it has FLOP for."""
    fixed = constants(gemm={"fp32": GemmConstants(0.8, 0.0)})
    batch = 1024
    times = compute.layer_times(net(linear("skinny", 1024, 8, 8)), A100, batch, "fp32", fixed)
    size_bytes = 4 * (batch * 1024 * 8 * 2 + 64)
    assert times.loc[0, "forward_s"] == pytest.approx(size_bytes / 1e12, rel=1e-12)


def test_memory_bound_layers_move_their_stated_bytes():
    fixed = constants()
    n, batch = 1_000_000, 4
    element = batch * n * 4
    layers = net(linear("stem", 1, 1, 1), elementwise("relu", "activation", n),
                 elementwise("bn", "norm", n, params=2), elementwise("soft", "softmax", n))
    times = compute.layer_times(layers, A100, batch, "fp32", fixed).set_index("name")
    # ReLU: read x, write y; backward reads y and dy, writes dx.
    assert times.loc["relu", "forward_s"] == pytest.approx(2 * element / 1e12, rel=1e-12)
    assert times.loc["relu", "backward_input_s"] == pytest.approx(3 * element / 1e12, rel=1e-12)
    # Batch norm: statistics pass reads x; normalize reads x and writes y. Backward:
    # reduction reads x and dy (parameter gradients); input gradient reads x, dy, writes dx.
    assert times.loc["bn", "forward_s"] == pytest.approx(3 * element / 1e12, rel=1e-12)
    assert times.loc["bn", "backward_weight_s"] == pytest.approx(2 * element / 1e12, rel=1e-12)
    assert times.loc["bn", "backward_input_s"] == pytest.approx(3 * element / 1e12, rel=1e-12)
    assert times.loc["soft", "backward_input_s"] == pytest.approx(3 * element / 1e12, rel=1e-12)


def test_half_precision_halves_the_bytes_of_memory_bound_layers():
    n = 10_000_000
    layers = net(linear("stem", 1, 1, 1), elementwise("relu", "activation", n))
    fp32 = compute.layer_times(layers, A100, 16, "fp32", constants())
    fp16 = compute.layer_times(layers, A100, 16, "fp16", constants())
    assert fp16.loc[1, "forward_s"] == pytest.approx(fp32.loc[1, "forward_s"] / 2, rel=1e-12)


def test_memory_half_bytes_follow_the_saturating_curve():
    fixed = constants(memory_half_bytes=4e6)
    size_bytes = 2 * 1_000_000 * 4
    times = compute.layer_times(net(elementwise("relu", "activation", 1_000_000)), A100, 1,
                                "fp32", fixed)
    expected = size_bytes / (1e12 * saturating_efficiency(size_bytes, 1.0, 4e6))
    assert times.loc[0, "forward_s"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx((size_bytes + 4e6) / 1e12, rel=1e-12)


def test_small_kernels_take_at_least_a_launch_each():
    fixed = constants(kernel_launch_s=5e-6, gemm={"fp32": GemmConstants(0.8, 0.0)})
    layers = net(linear("tiny", 1, 8, 8), elementwise("bn", "norm", 10, params=2))
    times = compute.layer_times(layers, A100, 1, "fp32", fixed).set_index("name")
    assert times.loc["tiny", "forward_s"] == 5e-6
    # Two kernels each way for batch norm, one for each parameter update.
    assert times.loc["bn", "forward_s"] == pytest.approx(10e-6)
    assert times.loc["bn", "backward_input_s"] == pytest.approx(5e-6)
    assert times.loc["bn", "backward_weight_s"] == pytest.approx(5e-6)
    assert times.loc["bn", "update_s"] == pytest.approx(5e-6)


def test_sgd_momentum_update_and_amp_weight_cast():
    """fp32: 20 bytes a parameter (read p, g, m; write p, m). AMP adds a 6-byte cast."""
    fixed = constants()
    params = 4096 * 4096
    layers = net(linear("fc", 1, 4096, 4096))
    fp32 = compute.layer_times(layers, A100, 1, "fp32", fixed)
    fp16 = compute.layer_times(layers, A100, 1, "fp16", fixed)
    assert fp32.loc[0, "update_s"] == pytest.approx(20 * params / 5e11, rel=1e-12)
    assert fp16.loc[0, "update_s"] == pytest.approx(26 * params / 5e11, rel=1e-12)


def test_doubling_the_batch_of_a_large_gemm_about_doubles_its_time():
    layers = net(linear("fc", 256, 4096, 4096))
    one = compute.layer_times(layers, A100, 32, "fp16", None)
    two = compute.layer_times(layers, A100, 64, "fp16", None)
    for column in ("forward_s", "backward_weight_s"):
        assert 1.95 < two.loc[0, column] / one.loc[0, column] <= 2.0
    # The optimizer update does not depend on the batch.
    assert two.loc[0, "update_s"] == one.loc[0, "update_s"]


def test_tf32_is_faster_than_fp32_on_a100():
    layers = net(linear("a", 196, 1024, 1024), elementwise("relu", "activation", 196 * 1024),
                 linear("b", 196, 1024, 1024))
    fp32 = compute.iteration_compute_time_s(layers, A100, 64, "fp32", None)
    tf32 = compute.iteration_compute_time_s(layers, A100, 64, "tf32", None)
    assert tf32 < fp32 / 3


def test_throughput_is_batch_over_iteration_time():
    layers = net(linear("fc", 16, 1024, 1024))
    seconds = compute.iteration_compute_time_s(layers, V100, 128, "fp16", None)
    times = compute.layer_times(layers, V100, 128, "fp16", None)
    assert seconds == pytest.approx(times[TIME_COLUMNS].to_numpy().sum(), rel=1e-12)
    assert compute.training_throughput_samples_per_s(layers, V100, 128, "fp16", None) == (
        pytest.approx(128 / seconds, rel=1e-12))


def test_nchw_convolutions_on_tensor_cores_pay_layout_transposes():
    fixed = constants()
    conv = linear("conv", 56 * 56, 256, 64 * 9, kind="conv")
    layers = net(linear("stem", 1, 1, 1), conv)
    batch = 32
    nchw = compute.layer_times(layers, A100, batch, "tf32", fixed, memory_format="nchw")
    nhwc = compute.layer_times(layers, A100, batch, "tf32", fixed, memory_format="nhwc")
    transposes = 2 * 4 * batch * (conv.input_elements + conv.output_elements) / 1e12
    for column in ("forward_s", "backward_input_s", "backward_weight_s"):
        assert nchw.loc[1, column] - nhwc.loc[1, column] == pytest.approx(transposes, rel=1e-9)
    # CUDA-core convolutions read NCHW natively (P100 has no tensor cores).
    assert compute.layer_times(layers, P100, batch, "fp16", fixed, memory_format="nchw").equals(
        compute.layer_times(layers, P100, batch, "fp16", fixed, memory_format="nhwc"))
    # The usual recipe: channels-last with mixed precision, NCHW otherwise.
    assert compute.resolve_memory_format("fp16") == "nhwc"
    assert compute.resolve_memory_format("tf32") == "nchw"


def test_matrix_unit_is_told_from_the_catalog():
    assert compute.matrix_unit(A100, "tf32") == "tensor"
    assert compute.matrix_unit(A100, "fp32") == "simt"
    assert compute.matrix_unit(V100, "fp16") == "tensor"
    assert compute.matrix_unit(P100, "fp16") == "simt"


def test_default_constants_derate_the_datasheet():
    defaults = compute.compute_constants(A100, None)
    assert 0.7 * 2039e9 < defaults.memory_bandwidth_Bps < 2039e9
    assert 3e-6 <= defaults.kernel_launch_s <= 10e-6
    assert set(defaults.gemm) == set(A100.precisions)
    assert defaults.gemm["fp16"].peak_fraction < 1.0
    for unit in compute.MATRIX_UNITS:
        assert 0.0 < defaults.conv_fraction(unit) <= 1.0
    assert defaults.winograd_reduction >= 1.0
    assert defaults.source.endswith("defaults.toml")


@pytest.mark.parametrize(("call", "field"), [
    (lambda: compute.layer_times(net(linear("a", 1, 8, 8)), V100, 8, "tf32"), "precision"),
    (lambda: compute.layer_times(net(linear("a", 1, 8, 8)), A100, 0, "fp32"), "batch_size"),
    (lambda: compute.layer_times(net(linear("a", 1, 8, 8)), A100, 8, "fp33"), "precision"),
    (lambda: compute.iteration_compute_time_s(net(linear("a", 1, 8, 8)), A100, 8, "fp16",
                                              memory_format="nwhc"), "memory_format"),
    (lambda: compute.compute_constants(A100, "calibrated"), "calibration"),
    (lambda: compute.compute_constants(A100, {"gpu_id": "v100-sxm2", "constants": {}}),
     "calibration.gpu_id"),
    (lambda: compute.compute_constants(A100, {"constants": {"memory_bandwidth_Bps": 1e12}}),
     "calibration.constants.memory_half_bytes"),
    (lambda: constants(kernel_launch_s=-1.0), "calibration.kernel_launch_s"),
    (lambda: constants(gemm={"fp16": GemmConstants(1.5, 1e9)}),
     "calibration.gemm.fp16.peak_fraction"),
])
def test_bad_input_is_refused_naming_the_field(call, field):
    with pytest.raises(ConfigError) as raised:
        call()
    assert raised.value.field == field


CALIBRATION = {
    "schema_version": 1,
    "gpu_id": "a100-sxm4-80gb",
    "constants": {
        "memory_bandwidth_Bps": 1.8e12,
        "memory_half_bytes": 2e6,
        "kernel_launch_s": 3e-6,
        "gemm": {"fp16": {"peak_fraction": 0.85, "half_work_flop": 2e9}},
        "optimizer_update_Bps": 1.5e12,
        "host_to_device_Bps": {"pinned": 2.2e10, "pageable": 1e10},
    },
}


def test_calibration_file_is_read_when_present(tmp_path, monkeypatch):
    path = tmp_path / "a100-sxm4-80gb.json"
    path.write_text(json.dumps(CALIBRATION))
    monkeypatch.setattr(compute, "calibration_path", lambda gpu: path)
    read = compute.compute_constants(A100)
    assert read.memory_bandwidth_Bps == 1.8e12
    assert read.kernel_launch_s == 3e-6
    assert read.gemm["fp16"] == GemmConstants(0.85, 2e9)
    # A precision the harness did not measure keeps its default curve.
    assert read.gemm["fp64"] == compute.compute_constants(A100, None).gemm["fp64"]
    assert read.source == str(path)
    # None forces the defaults even where a calibration file exists.
    assert compute.compute_constants(A100, None).memory_bandwidth_Bps == pytest.approx(
        2039e9 * compute.compute_constants(V100, None).memory_bandwidth_Bps / 900e9)
    layers = net(linear("a", 4096, 4096, 4096))
    assert compute.iteration_compute_time_s(layers, A100, 4, "fp16") == pytest.approx(
        compute.iteration_compute_time_s(layers, A100, 4, "fp16", CALIBRATION), rel=1e-12)


def test_missing_calibration_file_falls_back_to_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(compute, "calibration_path", lambda gpu: tmp_path / "absent.json")
    assert compute.compute_constants(A100) == compute.compute_constants(A100, None)


def test_unreadable_calibration_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    monkeypatch.setattr(compute, "calibration_path", lambda gpu: path)
    with pytest.raises(ConfigError, match="calibration file"):
        compute.compute_constants(A100)


def test_times_are_finite_and_positive_over_a_range_of_batches():
    layers = net(linear("stem", 3136, 64, 147, kind="conv"),
                 elementwise("bn", "norm", 3136 * 64, params=128),
                 elementwise("relu", "activation", 3136 * 64),
                 linear("fc", 1, 1000, 64))
    for batch in (1, 7, 64, 512):
        times = compute.layer_times(layers, V100, batch, "fp16")
        values = times[TIME_COLUMNS].to_numpy()
        assert all(math.isfinite(v) and v >= 0 for v in values.ravel())
        assert (times["forward_s"] > 0).all()


def test_convolutions_run_at_a_fraction_of_the_gemm_rate():
    fixed = constants(conv_fraction_of_gemm=0.5, memory_bandwidth_Bps=1e14,
                      gemm={"fp16": GemmConstants(0.8, 0.0)})
    shape = (3136, 256, 576)
    layers = net(linear("gemm", *shape), linear("conv", *shape, kind="conv"))
    times = compute.layer_times(layers, A100, 64, "fp16", fixed, memory_format="nhwc")
    flop = 2.0 * 64 * 3136 * 256 * 576
    assert times.loc[0, "forward_s"] == pytest.approx(flop / (312e12 * 0.8), rel=1e-12)
    assert times.loc[1, "forward_s"] == pytest.approx(flop / (312e12 * 0.4), rel=1e-12)


def test_simt_convolutions_take_the_value_of_their_sm_design():
    table = compute.defaults_table()
    simt = table["gemm"]["simt"]
    assert "volta" in simt["unified_l1_architectures"]
    assert "pascal" not in simt["unified_l1_architectures"]
    assert compute.compute_constants(V100, None).conv_fraction("simt") == pytest.approx(
        simt["conv_fraction_unified_l1"])
    assert compute.compute_constants(P100, None).conv_fraction("simt") == pytest.approx(
        simt["conv_fraction"])
    assert simt["smx_architectures"] == ["kepler"]
    assert compute.compute_constants(K80, None).conv_fraction("simt") == pytest.approx(
        simt["conv_fraction_smx"])
    # Maxwell's SM is Pascal's design, not Kepler's: it takes the separate-L1 value.
    assert compute.compute_constants(M40, None).conv_fraction("simt") == pytest.approx(
        simt["conv_fraction"])
    broken = {**table, "gemm": {**table["gemm"], "simt": {**simt,
                                                           "conv_fraction_unified_l1": 1.5}}}
    with pytest.raises(ConfigError, match="conv_fraction_unified_l1"):
        compute.default_constants(V100, broken)
    missing = {**table, "gemm": {**table["gemm"], "simt": {
        key: value for key, value in simt.items() if key != "conv_fraction_smx"}}}
    with pytest.raises(ConfigError, match="conv_fraction_smx"):
        compute.default_constants(K80, missing)
    # A GPU of another design does not need the SMX value.
    assert compute.default_constants(P100, missing).conv_fraction("simt") == pytest.approx(
        simt["conv_fraction"])


def test_a_frameworks_iteration_overhead_adds_once_to_the_step():
    layers = net(linear("fc1", 1, 1024, 1024), elementwise("relu", "activation", 1024),
                 linear("fc2", 1, 10, 1024))
    bare = constants()
    loaded = constants(iteration_overhead_s={"mxnet-module": 0.02})
    plain = compute.layer_times(layers, V100, 32, "fp32", bare, framework="mxnet-module")
    slowed = compute.layer_times(layers, V100, 32, "fp32", loaded, framework="mxnet-module")
    # The host's time comes before the first kernel and nowhere else.
    assert slowed.loc[0, "forward_s"] == pytest.approx(plain.loc[0, "forward_s"] + 0.02,
                                                       rel=1e-12)
    assert slowed.drop(index=0)[TIME_COLUMNS].equals(plain.drop(index=0)[TIME_COLUMNS])
    step_s = compute.iteration_compute_time_s(layers, V100, 32, "fp32", loaded,
                                              framework="mxnet-module")
    assert step_s == pytest.approx(plain[TIME_COLUMNS].to_numpy().sum() + 0.02, rel=1e-12)
    # Another framework takes none of it.
    other = compute.layer_times(layers, V100, 32, "fp32", loaded, framework="pytorch")
    assert other[TIME_COLUMNS].equals(
        compute.layer_times(layers, V100, 32, "fp32", bare, framework="pytorch")[TIME_COLUMNS])


def test_iteration_overheads_come_from_defaults_by_framework_id():
    table = compute.defaults_table()
    overheads = table["iteration_overhead_ms"]
    for gpu in (V100, K80):
        constants_ = compute.compute_constants(gpu, None)
        assert constants_.iteration_overhead_s == pytest.approx(
            {framework_id: ms * 1e-3 for framework_id, ms in overheads.items()})
    # A calibration file times GEMMs, not the host: the overheads stay the defaults'.
    calibrated = compute.constants_from_calibration(V100, {
        "memory_bandwidth_Bps": 8e11, "memory_half_bytes": 0.0, "kernel_launch_s": 5e-6})
    assert calibrated.iteration_overhead_s == compute.default_constants(V100).iteration_overhead_s
    unknown = {**table, "iteration_overhead_ms": {"mxnet-modul": 20.0}}
    with pytest.raises(ConfigError, match="iteration_overhead_ms framework.*mxnet-module"):
        compute.default_constants(V100, unknown)
    negative = {**table, "iteration_overhead_ms": {"tensorflow": -1.0}}
    with pytest.raises(ConfigError, match="iteration_overhead_ms.tensorflow"):
        compute.default_constants(V100, negative)
    with pytest.raises(ConfigError, match="iteration_overhead_ms"):
        compute.default_constants(V100, {**table, "iteration_overhead_ms": 20.0})
    with pytest.raises(ConfigError, match="iteration_overhead_s framework"):
        constants(iteration_overhead_s={"caffe": 0.01})
