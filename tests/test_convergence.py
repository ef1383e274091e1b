import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import convergence
from models.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fit_convergence  # noqa: E402

IMAGENET = 1281167


def test_fit_recovers_the_constants_of_exact_law_points():
    batch = np.array([512, 2048, 8192, 32768, 65536])
    points = pd.DataFrame({"global_batch": batch, "value": 30.0 * (1 + batch / 20000.0)})
    fit = convergence.fit_critical_batch(points)
    assert fit.minimum == pytest.approx(30.0, rel=1e-9)
    assert fit.noise_batch == pytest.approx(20000.0, rel=1e-9)
    assert fit.rms_relative_residual < 1e-9


def test_fit_refuses_flat_or_single_batch_points():
    with pytest.raises(ConfigError, match="batch-size penalty"):
        convergence.fit_critical_batch(pd.DataFrame({"global_batch": [256, 8192],
                                                     "value": [90.0, 90.0]}))
    with pytest.raises(ConfigError, match="two distinct"):
        convergence.fit_critical_batch(pd.DataFrame({"global_batch": [256], "value": [90.0]}))


def test_stored_constants_match_a_refit_of_the_published_points():
    fits = fit_convergence.fits()
    assert len(fits) == 3
    for (workload_id, recipe_id, target), fit in fits.items():
        _, recipe = convergence.find_recipe(workload_id, recipe_id)
        assert f"{recipe.target[0]}={recipe.target[1]:g}" == target
        assert recipe.minimum == pytest.approx(fit.minimum, rel=1e-4)
        assert recipe.noise_batch == pytest.approx(fit.noise_batch, rel=1e-4)


def test_steps_and_samples_follow_the_two_forms_of_the_law():
    _, recipe = convergence.find_recipe("resnet50")
    s_min = recipe.minimum * IMAGENET / recipe.noise_batch
    for batch in (1024, 8192, 32768):
        steps = convergence.steps_to_target("resnet50", batch, "top1=0.759")
        assert steps == pytest.approx(s_min * (1 + recipe.noise_batch / batch), rel=1e-12)
        epochs = convergence.epochs_to_target("resnet50", batch, "top1=0.759")
        assert epochs == pytest.approx(recipe.minimum * (1 + batch / recipe.noise_batch))
        assert steps * batch / IMAGENET == pytest.approx(epochs, rel=1e-12)


@pytest.mark.parametrize("batch, published_epochs", [
    # MLPerf RCPs (rcps_resnet.json, training_4.0.0): mean epochs to 75.9% top-1.
    (3264, 35.2), (32768, 56.0), (65536, 84.5),
])
def test_resnet_lars_epochs_match_mlperf_reference_points(batch, published_epochs):
    assert convergence.epochs_to_target("resnet50", batch, "top1=0.759") == pytest.approx(
        published_epochs, rel=0.08)


def test_held_out_point_is_predicted_from_the_others():
    points = convergence.convergence_points()
    bert = points[points.workload == "bert-large"]
    held = bert[bert.global_batch == 12288].iloc[0]
    fit = convergence.fit_critical_batch(bert[bert.global_batch != 12288])
    # MLPerf BERT RCP at batch 12288: 4,470,336 samples to 0.72 Mask-LM accuracy.
    assert float(fit.amount(12288)) == pytest.approx(held.value, rel=0.1)


def test_steps_fall_and_samples_rise_with_the_batch():
    batches = [256, 1024, 4096, 16384]
    steps = [convergence.steps_to_target("bert-large", b, "mlm_accuracy=0.72") for b in batches]
    samples = [s * b for s, b in zip(steps, batches, strict=True)]
    assert np.all(np.diff(steps) < 0)
    assert np.all(np.diff(samples) > 0)


def test_goyal_recipe_is_a_fixed_90_epoch_schedule_up_to_8k():
    for batch in (256, 8192):
        assert convergence.epochs_to_target("resnet50", batch, "epochs=90",
                                            recipe="goyal-sgd") == pytest.approx(90.0)
    with pytest.raises(ConfigError, match="8192"):
        convergence.steps_to_target("resnet50", 16384, "epochs=90", recipe="goyal-sgd")
    with pytest.raises(ConfigError, match="epochs=<E>"):
        convergence.steps_to_target("resnet50", 1024, "top1=0.759", recipe="goyal-sgd")


def test_epoch_target_is_the_fixed_schedule_whatever_the_recipe():
    steps = convergence.steps_to_target("resnet50", 1000, "epochs=2")
    assert steps == pytest.approx(2 * IMAGENET / 1000)


@pytest.mark.parametrize("call, message", [
    (lambda: convergence.steps_to_target("resnet5", 1024, "top1=0.759"), "did you mean 'resnet50'"),
    (lambda: convergence.steps_to_target("resnet50", 1024, "top1=0.75"), "top1=0.759"),
    (lambda: convergence.steps_to_target("resnet50", 1024, "top1=0.759", recipe="mlperf-lamb"),
     "did you mean 'mlperf-lars'"),
    (lambda: convergence.steps_to_target("resnet50", 1024, "top1"), "metric=value"),
    (lambda: convergence.steps_to_target("resnet50", 1024, "top1=high"), "numeric"),
    (lambda: convergence.steps_to_target("resnet50", 0, "top1=0.759"), "global_batch"),
    (lambda: convergence.steps_to_target("resnet50", 70000, "top1=0.759"), "67840"),
    (lambda: convergence.epochs_to_target("bert-large", 1024, "mlm_accuracy=0.72"),
     "dataset_samples"),
])
def test_bad_input_names_field_and_valid_values(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_every_point_row_cites_source_and_quote():
    points = convergence.convergence_points()
    assert points["source"].str.len().min() > 20
    assert points["quote"].str.len().min() > 20
    assert not math.isnan(points["value"].min())
