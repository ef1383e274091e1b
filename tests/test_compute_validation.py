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
