"""Single-GPU training throughput against published measurements.

Each figure is copied from data/validation/published.csv (source, table and quote there).
The model is not fitted to any one row: the same constants (data/calibration/
defaults.toml) serve every GPU. Tolerance: 15%.
"""

import pytest

from models import catalog, compute

pytest.importorskip("models.architectures.cnn", reason="CNN layer builders not merged yet")
pytest.importorskip("models.architectures.transformer",
                    reason="transformer layer builders not merged yet")

from models import workloads  # noqa: E402

PUBLISHED = [
    # p10: TensorFlow Performance Benchmarks page (tensorflow.org/performance/benchmarks,
    # May 2017), DGX-1 P100, synthetic data, tf_cnn_benchmarks: "Training synthetic data
    # (DGX-1 P100): GPUs 1 | InceptionV3 142".
    ("p10", "inception-v3", "p100-sxm2", 64, "fp32", 142.0),
    # p60/p62/p66: NVIDIA DeepLearningExamples PyTorch ResNet-50 v1.5 README (21.03
    # container), "Training performance", 1 GPU, batch 256.
    ("p60", "resnet50", "a100-sxm4-80gb", 256, "tf32", 938.0),   # DGX A100: TF32 938 img/s
    ("p62", "resnet50", "a100-sxm4-80gb", 256, "fp16", 2470.0),  # DGX A100: AMP 2470 img/s
    ("p66", "resnet50", "v100-sxm2", 256, "fp16", 1200.0),       # DGX-1 16GB: AMP 1200 img/s
]


@pytest.mark.parametrize(("row", "model", "gpu_id", "batch", "precision", "measured"),
                         PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_single_gpu_throughput_within_15_percent(row, model, gpu_id, batch, precision,
                                                 measured):
    predicted = compute.training_throughput_samples_per_s(
        workloads.workload(model), catalog.gpu(gpu_id), batch, precision, calibration=None)
    assert predicted == pytest.approx(measured, rel=0.15)


def test_compute_fit_takes_every_single_gpu_row_and_fits_the_overheads():
    # benchmarks/compute_fit.py fits every single-GPU speed row, whatever its batch:
    # the per-iteration overheads fitted with the efficiency constants are what tells a
    # step of 16 images from one of 128.
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("compute_fit",
                                                  root / "benchmarks" / "compute_fit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    rows = module.fit_rows().set_index("id")
    assert (rows["gpus_total"] == 1).all()
    assert {"v07", "x10", "x11", "x16", "x17"} <= set(rows.index)
    # Layer benchmarks (forward and backward only) enter too, unless held out as a test.
    speed = module.speed_rows().set_index("id")
    layer = set(speed.index[module.is_layer_benchmark(speed)])
    assert {"j01", "j09", "j28"} <= layer <= set(rows.index)
    assert not layer & set(module.fit_rows(layer_benchmarks=False)["id"])
    # The Winograd threshold is chosen on a grid, not by the gradient fit.
    assert module.WINOGRAD_MIN_PIXELS not in [path for path, _, _ in module.PARAMETERS]
    stored = compute.defaults_table()["gemm"]["simt"]["winograd_min_pixels"]
    assert stored in module.WINOGRAD_MIN_PIXELS_GRID
    fitted = [path for path, _, _ in module.PARAMETERS]
    overheads = [path[1] for path in fitted if path[0] == "iteration_overhead_ms"]
    assert set(overheads) <= set(compute.defaults_table()["iteration_overhead_ms"])
    assert len(fitted) == len(module.PRIORS) + len(overheads)
    assert fitted[module.FIRST_OVERHEAD:] == [("iteration_overhead_ms", framework_id)
                                              for framework_id in overheads]
