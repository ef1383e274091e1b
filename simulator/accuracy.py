"""Time to accuracy: samples the target needs, over the samples per second simulated.

Two factors decide how many samples a run needs (see README, "Time to accuracy"):

1. the statistical efficiency of the batch each update is computed on, from the
   critical-batch law of :mod:`models.convergence` (the global batch for synchronous
   algorithms, one worker's batch for asynchronous and decentralized ones, whose updates
   are each computed on one worker's minibatch);
2. for asynchronous and decentralized algorithms, the price of staleness and model
   disagreement, *measured* by replaying the simulated update log on the convex proxy
   problem of :mod:`models.emulation` (:func:`models.emulation.staleness_factor`):
   gradient updates to the proxy's target under the simulated schedule, over those of
   plain SGD on the same samples.

Time to accuracy is then the samples needed over the simulated training throughput;
GPU-hours count the cluster's GPUs for that long, and the cost prices them at the
catalog's (or the scenario's) price per GPU-hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from models import emulation as em
from models.errors import ConfigError, require_int, require_number

#: Algorithms whose every update averages the gradients of the whole (effective) global
#: batch on one model: no staleness, no disagreement.
SYNCHRONOUS = frozenset({"allreduce", "ps-sync"})
#: Algorithms whose workers all train their own model copy at once, mixing them now and
#: then: their progress per unit time is that of all workers' samples together.
PARALLEL_MODELS = frozenset({"easgd", "gossip", "local-sgd"})

#: The proxy problem's training setting: the default softmax-regression problem of
#: :mod:`models.emulation`, 8 samples per worker minibatch, target held-out
#: cross-entropy 1.0 (from 2.303 at the zero model; the optimum is about 0.915), so the
#: target means "most of the way to convergence" rather than the first lucky crossing of
#: an accuracy threshold. Each schedule, and the plain-SGD reference, gets the best
#: learning rate of PROXY_LRS (stale gradients need smaller steps; a practitioner tunes
#: the rate per method), mean over PROXY_SEEDS.
PROXY_BATCH_PER_WORKER = 8
PROXY_LRS = (0.3, 0.1, 0.03)
PROXY_TARGET_LOSS = 1.1
PROXY_EVALUATE_EVERY = 1
PROXY_SEEDS = (0, 1, 2, 3)
#: The simulated log is continued periodically (same staleness, same partners, same
#: exchange rhythm) so that short simulations still let the proxy reach its target, up
#: to this many times the samples the synchronous reference needs; beyond, the schedule
#: counts as not converging (factor ``inf``).
PROXY_MAX_FACTOR = 5.0
PROXY_MAX_REFERENCE_STEPS = 4000
CURVE_COLUMNS = ("time_s", "samples", "progress", "proxy_test_accuracy", "proxy_test_loss")
#: Elastic moving rate of EASGD (Zhang et al. 2015's beta; alpha = beta / workers).
DEFAULT_MOVING_RATE = 0.9


@dataclass(frozen=True)
class TimeToAccuracy:
    #: The batch the convergence law is evaluated at: samples behind one update.
    samples_per_update: float
    #: Samples to the target at that batch for synchronous SGD, before the schedule factor.
    law_samples: float
    #: Gradient updates the simulated schedule needs over those of synchronous SGD (1 for
    #: synchronous algorithms; ``inf`` when the proxy never reached its target).
    schedule_factor: float
    samples_to_target: float
    throughput_samples_per_s: float
    time_to_accuracy_s: float
    gpus: int
    gpu_hours: float
    price_per_gpu_hour_usd: float | None
    cost_usd: float | None
    #: Progress against simulated wall-clock: time_s, samples, progress (fraction of the
    #: samples the target needs) and the proxy problem's held-out accuracy at that point.
    curve: pd.DataFrame


def continue_log(update_log: pd.DataFrame, gradient_updates: int,
                 period_s: float) -> pd.DataFrame:
    """The schedule's first ``gradient_updates`` gradient rows (with the exchanges between
    them), continued periodically where the schedule is shorter.

    Repetition ``k`` of a row happens ``k * period_s`` later, by the same worker with the
    same partner, and a push reads a model as many versions old as the original did.
    """
    require_int("gradient_updates", gradient_updates, minimum=0)
    require_number("period_s", period_s, minimum=0.0, exclusive_minimum=True)
    consumes = update_log["kind"].isin(["sync", "push", "local"]).to_numpy()
    per_copy = int(consumes.sum())
    if per_copy == 0:
        raise ConfigError("update_log", f"{len(update_log)} rows",
                          "a schedule with at least one gradient update (sync, push or local)")
    copies = max(1, math.ceil(gradient_updates / per_copy))
    rows = len(update_log)
    changes_center = update_log["kind"].isin(["sync", "push", "elastic"]).to_numpy()
    # Center version each row sees when it is applied, and how far behind its read was.
    version_before = np.concatenate([[0], np.cumsum(changes_center)[:-1]])
    is_push = (update_log["kind"] == "push").to_numpy()
    lag = np.where(is_push, version_before - update_log["read_version"].to_numpy(), 0)
    versions_per_copy = int(changes_center.sum())

    repeat = np.repeat(np.arange(copies), rows)
    tiled = pd.concat([update_log] * copies, ignore_index=True)
    tiled["time_s"] = tiled["time_s"].to_numpy() + repeat * period_s
    tiled_version = np.tile(version_before, copies) + repeat * versions_per_copy
    tiled["read_version"] = np.where(np.tile(is_push, copies),
                                     tiled_version - np.tile(lag, copies),
                                     tiled["read_version"].to_numpy())
    gradient_rows = np.cumsum(np.tile(consumes, copies))
    keep = int(np.searchsorted(gradient_rows, gradient_updates)) + 1
    return tiled.iloc[:keep].reset_index(drop=True)


def _gradient_updates(log: pd.DataFrame, trace: pd.DataFrame) -> float:
    """Gradient updates (rows that consume a minibatch) until the trace's last row, or
    ``inf`` when the trace never reached the proxy's target."""
    if trace.empty or not trace["test_loss"].iloc[-1] <= PROXY_TARGET_LOSS:
        return math.inf
    consumes = log["kind"].isin(["sync", "push", "local"]).to_numpy()
    return float(consumes[:int(trace["update"].iloc[-1])].sum())


def _replay(log: pd.DataFrame, workers: int, batch: int, lr: float, seed: int,
            emulation_options: dict, evaluate_every: int = PROXY_EVALUATE_EVERY
            ) -> pd.DataFrame:
    return em.emulate(log, workers, batch, lr, seed, target_loss=PROXY_TARGET_LOSS,
                      evaluate_every=evaluate_every, **emulation_options)


def _best_rate(log: pd.DataFrame, every: int,
               replay: Callable[[float, int, pd.DataFrame], pd.DataFrame]
               ) -> dict[float, tuple[float, pd.DataFrame | None]]:
    """For each rate of PROXY_LRS, the mean over PROXY_SEEDS of the gradient updates
    ``replay(lr, seed, log)`` needs to the target, and its first seed's trace; exact for
    the rate(s) with the least mean, ``inf`` for some of the others.

    A rate beats the best so far only if its seeds together need at most
    ``len(PROXY_SEEDS) * best`` updates, so each seed is replayed on the log cut where
    what is left of that sum runs out: a seed that reaches the target there does so
    exactly as on the whole log (the cut falls on a row evaluated every ``every``), and
    one that does not proves the rate is not better.
    """
    gradient_rows = np.cumsum(log["kind"].isin(["sync", "push", "local"]).to_numpy())
    result: dict[float, tuple[float, pd.DataFrame | None]] = {}
    best = math.inf
    for lr in PROXY_LRS:
        total = 0.0
        first = None
        for seed in PROXY_SEEDS:
            allowed = len(PROXY_SEEDS) * best - total
            rows = len(log)
            if math.isfinite(allowed):
                within = int(np.searchsorted(gradient_rows, allowed, side="right"))
                rows = min(rows, math.ceil(within / every) * every)
            trace = replay(lr, seed, log.iloc[:rows])
            first = trace if first is None else first
            total += _gradient_updates(log, trace)
            if math.isinf(total) or total > len(PROXY_SEEDS) * best:
                total = math.inf
                break
        result[lr] = (total / len(PROXY_SEEDS), first)
        best = min(best, total / len(PROXY_SEEDS))
    return result


@cache
def _reference_samples(lr: float, batch: int) -> float:
    """Mean samples synchronous SGD at global batch ``batch`` needs to the proxy target
    (one minibatch of ``batch`` per step: the mean of equal per-worker gradients)."""
    log = em.synchronous_log(PROXY_MAX_REFERENCE_STEPS)
    return batch * float(np.mean([_gradient_updates(log, _replay(log, 1, batch, lr, seed, {}))
                                  for seed in PROXY_SEEDS]))


@cache
def _best_reference(batch: int) -> tuple[float, float]:
    """The rate of PROXY_LRS at which synchronous SGD at global batch ``batch`` needs
    the fewest samples to the proxy target, and those samples (mean over PROXY_SEEDS):
    the least of :func:`_reference_samples`, without replaying rates that cannot win."""
    log = em.synchronous_log(PROXY_MAX_REFERENCE_STEPS)
    rates = _best_rate(log, PROXY_EVALUATE_EVERY,
                       lambda lr, seed, cut: _replay(cut, 1, batch, lr, seed, {}))
    lr = min(PROXY_LRS, key=lambda rate: rates[rate][0])
    return lr, batch * rates[lr][0]


def reference_batch(algorithm: str, workers: int) -> int:
    """Proxy batch of the synchronous reference a schedule is held against: one worker's
    batch for the asynchronous parameter server (each update applies one worker's
    gradient), all workers' for the schemes whose workers all progress at once."""
    return PROXY_BATCH_PER_WORKER * (workers if algorithm in PARALLEL_MODELS else 1)


def reference_trace(batch: int = PROXY_BATCH_PER_WORKER) -> pd.DataFrame:
    """Synchronous SGD on the proxy at its best rate: the synchronous progress curve."""
    lr = _best_reference(batch)[0]
    log = em.synchronous_log(PROXY_MAX_REFERENCE_STEPS)
    trace = _replay(log, 1, batch, lr, PROXY_SEEDS[0], {})
    trace["gradient_updates"] = trace["update"]
    return trace


def schedule_factor(update_log: pd.DataFrame, workers: int, algorithm: str,
                    period_s: float, options: dict | None = None) -> tuple[float, pd.DataFrame]:
    """Measured staleness/disagreement factor of a simulated schedule, and the proxy's
    progress (first seed, best rate) for the progress curve.

    factor = (min over rates of the mean samples the schedule needs to the proxy target)
    / (the same for synchronous SGD at :func:`reference_batch`); ``inf`` when the
    schedule needs more than PROXY_MAX_FACTOR times the reference's samples.
    """
    options = dict(options or {})
    emulation_options: dict = {}
    if algorithm == "easgd":
        emulation_options["alpha"] = options.get("moving_rate", DEFAULT_MOVING_RATE) / workers
    if algorithm == "gossip":
        emulation_options["gossip"] = options.get("variant", "push")
    batch = reference_batch(algorithm, workers)
    reference = _best_reference(batch)[1]
    if not math.isfinite(reference):
        raise ConfigError("proxy reference", batch, "a batch at which synchronous SGD "
                          "reaches the proxy target")
    budget_updates = math.ceil(PROXY_MAX_FACTOR * reference / PROXY_BATCH_PER_WORKER)
    log = continue_log(update_log, budget_updates, period_s)
    # Schemes whose workers progress together are judged once per round of all workers,
    # the resolution of their synchronous reference.
    every = max(PROXY_EVALUATE_EVERY, workers if algorithm in PARALLEL_MODELS else 1)
    rates = _best_rate(log, every, lambda lr, seed, cut: _replay(
        cut, workers, PROXY_BATCH_PER_WORKER, lr, seed, emulation_options, every))
    best_lr = min(PROXY_LRS, key=lambda lr: rates[lr][0])
    factor = PROXY_BATCH_PER_WORKER * rates[best_lr][0] / reference
    trace = rates[best_lr][1].copy()
    consumes = log["kind"].isin(["sync", "push", "local"]).to_numpy()
    trace["gradient_updates"] = np.cumsum(consumes)[trace["update"].to_numpy() - 1]
    return factor, trace


def time_to_accuracy(*, samples_at_batch: Callable[[float], float], algorithm: str,
                     update_log: pd.DataFrame, workers: int, batch_per_worker: int,
                     global_batch: float, throughput_samples_per_s: float,
                     simulated_time_s: float, gpus: int,
                     price_per_gpu_hour_usd: float | None,
                     options: dict | None = None) -> TimeToAccuracy:
    """Time, GPU-hours and cost to the target for a simulated run (see the module notes).

    ``samples_at_batch(B)``: samples synchronous SGD needs to the target at batch ``B``
    (the convergence law, e.g. :func:`models.convergence.samples_to_target`).
    ``global_batch`` is the samples one synchronous step applies (without the gradients
    backup workers drop); ``throughput_samples_per_s`` the samples per second whose
    gradients are applied.
    """
    require_number("throughput_samples_per_s", throughput_samples_per_s, minimum=0.0,
                   exclusive_minimum=True)
    if algorithm in SYNCHRONOUS:
        samples_per_update = float(global_batch)
        factor = 1.0
        trace = reference_trace()
    else:
        samples_per_update = float(batch_per_worker * (workers if algorithm in PARALLEL_MODELS
                                                       else 1))
        factor, trace = schedule_factor(update_log, workers, algorithm, simulated_time_s,
                                        options)
    law_samples = float(samples_at_batch(samples_per_update))
    samples = law_samples * factor
    seconds = samples / throughput_samples_per_s
    gpu_hours = seconds * gpus / 3600.0
    cost = None if price_per_gpu_hour_usd is None else gpu_hours * price_per_gpu_hour_usd

    if math.isfinite(factor) and len(trace):
        # The proxy's progress in gradient updates maps onto the large workload's samples.
        proxy_updates_to_target = float(trace["gradient_updates"].iloc[-1])
        progress = trace["gradient_updates"].to_numpy() / proxy_updates_to_target
        curve = pd.DataFrame({"time_s": progress * seconds, "samples": progress * samples,
                              "progress": progress,
                              "proxy_test_accuracy": trace["test_accuracy"].to_numpy(),
                              "proxy_test_loss": trace["test_loss"].to_numpy()})
    else:
        curve = pd.DataFrame(columns=list(CURVE_COLUMNS))
    return TimeToAccuracy(
        samples_per_update=samples_per_update, law_samples=law_samples,
        schedule_factor=factor, samples_to_target=samples,
        throughput_samples_per_s=throughput_samples_per_s, time_to_accuracy_s=seconds,
        gpus=gpus, gpu_hours=gpu_hours, price_per_gpu_hour_usd=price_per_gpu_hour_usd,
        cost_usd=cost, curve=curve)
