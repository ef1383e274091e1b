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


def test_compute_fit_takes_filled_gpus_only():
    # benchmarks/compute_fit.py fits image models at 64 or more images per GPU (the
    # compute model has no per-iteration overhead or partly filled wave); transformer rows
    # and every multi-GPU row are outside that rule's reach.
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
    images = rows[rows["model"] != "bert-large-seq128"]
    assert (images["batch_per_gpu"] >= module.FIT_MIN_IMAGES_PER_GPU).all()
    assert "v07" in rows.index  # BERT-large, 32 sequences of 128 tokens
    assert {"x10", "x11", "x12", "x13"}.isdisjoint(rows.index)  # V100 at 16-32 images
    assert {"x14", "x15", "x16", "x17"} <= set(rows.index)  # V100 at 64-128 images
