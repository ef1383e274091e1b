"""Replay a simulated update schedule on a real small training problem.

The engine decides *when* each update happens and *which model version* it used; this
module measures what that costs in convergence. It replays the engine's update log,
row by row, with real minibatch gradients of softmax regression on a fixed Gaussian
mixture classification problem, and reports held-out accuracy after every update.

Update log: a DataFrame with one row per update, in the order the updates take effect,
and the columns

- ``time_s``: when the update takes effect (carried through to the result);
- ``worker``: the worker that made it (ignored for ``sync`` and ``average``);
- ``kind``: one of :data:`KINDS`:

  - ``sync``: one synchronous step of all workers on the current model; each worker
    draws ``batch_per_worker`` samples and the mean gradient (global batch
    ``workers * batch_per_worker``) is applied once;
  - ``push``: asynchronous parameter server; the server applies the worker's gradient
    computed on model version ``read_version`` (a history of versions is kept);
  - ``local``: one SGD step of the worker on its own model (EASGD, gossip, local SGD);
  - ``elastic``: EASGD exchange (Zhang, Choromanska, LeCun 2015): with
    ``d = alpha * (x_worker - center)``, ``x_worker -= d`` and ``center += d``;
  - ``gossip``: the worker and ``peer`` average their models (see ``gossip=``);
  - ``average``: local SGD; every worker model becomes their mean;
- ``read_version``: the server version the gradient was computed on (``push``); the
  current version for ``sync``; ignored otherwise;
- ``peer``: the gossip partner, -1 when none;
- ``step``: the worker's local step count (carried through).

Every worker model starts at the initial (zero) model. Worker ``w`` draws its
minibatches from ``models.random_streams.stream(seed, f"emulation.worker-{w}")``, one
draw per gradient it computes, so a schedule with one worker and fresh reads replays
plain SGD on the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from models.errors import ConfigError, require_choice, require_int, require_number
from models.random_streams import stream

KINDS = ("sync", "push", "local", "elastic", "gossip", "average")
#: ``symmetric``: both set to the pair's mean (preserves the mean of all models);
#: ``pull``: only the worker takes the mean (Jin et al. 2016 pull-gossip);
#: ``push``: only the peer takes the mean.
GOSSIP_VARIANTS = ("symmetric", "pull", "push")
LOG_COLUMNS = ("time_s", "worker", "kind", "read_version", "peer", "step")
#: Kinds that change the server/center model; a log with any of them is judged by the
#: center, a log of only local/gossip/average rows by the mean of the worker models.
_CENTER_KINDS = {"sync", "push", "elastic"}


@dataclass(frozen=True)
class Problem:
    """Softmax regression on a Gaussian mixture: one mean per class, unit covariance.

    The L2 term makes the loss strongly convex, so staleness has a clean effect.
    """

    classes: int = 10
    features: int = 20
    train_samples: int = 2000
    test_samples: int = 2000
    #: Standard deviation of the class means around the origin, per feature.
    separation: float = 0.5
    weight_decay: float = 1e-3
    #: Seed of the data set, apart from the training seed: changing the training seed
    #: changes minibatch draws, not the problem.
    data_seed: int = 0

    def __post_init__(self):
        require_int("problem.classes", self.classes, minimum=2)
        require_int("problem.features", self.features, minimum=1)
        require_int("problem.train_samples", self.train_samples, minimum=1)
        require_int("problem.test_samples", self.test_samples, minimum=1)
        require_number("problem.separation", self.separation, minimum=0.0,
                       exclusive_minimum=True)
        require_number("problem.weight_decay", self.weight_decay, minimum=0.0)
        require_int("problem.data_seed", self.data_seed, minimum=0)


@dataclass(frozen=True)
class _Data:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@cache
def _data(problem: Problem) -> _Data:
    rng = stream(problem.data_seed, "emulation.problem")
    means = rng.normal(0.0, problem.separation, size=(problem.classes, problem.features))

    def draw(count):
        labels = rng.integers(0, problem.classes, size=count)
        points = means[labels] + rng.normal(size=(count, problem.features))
        # A constant column carries the bias.
        return np.hstack([points, np.ones((count, 1))]), labels

    train_x, train_y = draw(problem.train_samples)
    test_x, test_y = draw(problem.test_samples)
    for array in (train_x, train_y, test_x, test_y):
        array.setflags(write=False)
    return _Data(train_x, train_y, test_x, test_y)


def initial_model(problem: Problem) -> np.ndarray:
    return np.zeros((problem.features + 1, problem.classes))


def gradient(problem: Problem, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy plus L2 term on the training rows ``indices``."""
    data = _data(problem)
    x = data.train_x[indices]
    probabilities = _softmax(x @ weights)
    probabilities[np.arange(len(indices)), data.train_y[indices]] -= 1.0
    return x.T @ probabilities / len(indices) + problem.weight_decay * weights


def _gradients(problem: Problem, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """:func:`gradient` of each model ``weights[k]`` on its rows ``indices[k]``.

    Stacked matmul runs one BLAS product per model, the same as :func:`gradient` does, so
    the result equals it bit for bit on the platforms tested (the tests hold it to 1e-12
    relative, as a BLAS is free to sum in another order for another shape).
    """
    data = _data(problem)
    count, size = indices.shape
    x = data.train_x[indices]
    probabilities = _softmax(np.matmul(x, weights))
    probabilities[np.arange(count)[:, None], np.arange(size), data.train_y[indices]] -= 1.0
    return (np.matmul(x.transpose(0, 2, 1), probabilities) / size
            + problem.weight_decay * weights)


def evaluate(problem: Problem, weights: np.ndarray) -> tuple[float, float]:
    """Held-out (accuracy, mean cross-entropy) of ``weights``."""
    data = _data(problem)
    logits = data.test_x @ weights
    shifted = logits - logits.max(axis=1, keepdims=True)
    # Only the true classes' log-probabilities enter the loss.
    log_probabilities = (shifted[np.arange(len(data.test_y)), data.test_y]
                         - np.log(np.exp(shifted).sum(axis=1)))
    loss = -float(log_probabilities.mean())
    accuracy = float(np.mean(logits.argmax(axis=1) == data.test_y))
    return accuracy, loss


def accuracy_of(problem: Problem, weights: np.ndarray) -> float:
    """Held-out accuracy of ``weights``."""
    data = _data(problem)
    return float(np.mean((data.test_x @ weights).argmax(axis=1) == data.test_y))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def synchronous_log(steps: int) -> pd.DataFrame:
    """``steps`` synchronous steps (one row each)."""
    require_int("steps", steps, minimum=0)
    index = np.arange(steps)
    return pd.DataFrame({"time_s": index.astype(float), "worker": -1, "kind": "sync",
                         "read_version": index, "peer": -1, "step": index})


def push_log(updates: int, workers: int, staleness: int | None = None,
             compute_s: float = 1.0) -> pd.DataFrame:
    """Asynchronous parameter server with equal workers taking turns.

    Worker ``i % workers`` makes update ``i`` from version ``max(0, i - staleness)``.
    The default ``staleness = workers - 1`` is the steady state of equal-speed async
    SGD: each worker reads the model right after its own previous update is applied.
    """
    require_int("updates", updates, minimum=0)
    require_int("workers", workers, minimum=1)
    staleness = workers - 1 if staleness is None else staleness
    require_int("staleness", staleness, minimum=0)
    index = np.arange(updates)
    return pd.DataFrame({"time_s": compute_s * (index + 1) / workers, "worker": index % workers,
                         "kind": "push", "read_version": np.maximum(index - staleness, 0),
                         "peer": -1, "step": index // workers})


def local_sgd_log(workers: int, rounds: int, period: int) -> pd.DataFrame:
    """Local SGD: each round, every worker takes ``period`` local steps, then all average."""
    require_int("workers", workers, minimum=1)
    require_int("rounds", rounds, minimum=0)
    require_int("period", period, minimum=1)
    rows = []
    for round_index in range(rounds):
        for local in range(period):
            step = round_index * period + local
            rows += [(float(step), w, "local", -1, -1, step) for w in range(workers)]
        rows.append((float((round_index + 1) * period), -1, "average", -1, -1,
                     (round_index + 1) * period))
    return pd.DataFrame(rows, columns=list(LOG_COLUMNS))


def _validate_log(update_log: pd.DataFrame, workers: int) -> None:
    if not isinstance(update_log, pd.DataFrame):
        raise ConfigError("update_log", type(update_log).__name__, "a pandas DataFrame")
    missing = [column for column in LOG_COLUMNS if column not in update_log]
    if missing:
        raise ConfigError("update_log", list(update_log.columns),
                          "columns " + ", ".join(LOG_COLUMNS) + f" (missing {missing})")
    bad_kind = ~update_log["kind"].isin(KINDS)
    if bad_kind.any():
        row = int(np.flatnonzero(bad_kind)[0])
        require_choice(f"update_log.kind[{row}]", update_log["kind"].iloc[row], KINDS)
    needs_worker = update_log["kind"].isin(["push", "local", "elastic", "gossip"]).to_numpy()
    worker = update_log["worker"].to_numpy()
    bad_worker = needs_worker & ((worker < 0) | (worker >= workers))
    if bad_worker.any():
        row = int(np.flatnonzero(bad_worker)[0])
        raise ConfigError(f"update_log.worker[{row}]", int(worker[row]),
                          f"a worker index in 0..{workers - 1}")
    gossip = (update_log["kind"] == "gossip").to_numpy()
    peer = update_log["peer"].to_numpy()
    bad_peer = gossip & ((peer < 0) | (peer >= workers) | (peer == worker))
    if bad_peer.any():
        row = int(np.flatnonzero(bad_peer)[0])
        raise ConfigError(f"update_log.peer[{row}]", int(peer[row]),
                          f"another worker's index in 0..{workers - 1}")


def emulate(update_log: pd.DataFrame, workers: int, batch_per_worker: int, lr: float,
            seed: int, problem: Problem | None = None, target_accuracy: float | None = None,
            alpha: float = 0.1, gossip: str = "symmetric",
            with_loss: bool = True, target_loss: float | None = None,
            evaluate_every: int = 1) -> pd.DataFrame:
    """Replay ``update_log``; one result row per update.

    Result columns: ``update`` (1-based count of updates applied), ``time_s``, ``kind``,
    ``test_accuracy`` and ``test_loss`` of the evaluated model (the center/server model,
    or the mean of the worker models for logs without sync/push/elastic rows). With
    ``target_accuracy`` the replay stops at the first update that reaches it. A replay
    whose model stops being finite (the learning rate diverges for that schedule) ends
    there. ``with_loss=False`` skips the loss (NaN), most of the evaluation's cost.
    With ``target_loss`` the replay stops at the first update whose held-out loss is at
    most that. ``evaluate_every=k`` evaluates (and emits a row) only every k-th update
    and at the last one, so counts to a target are known to within k updates.
    """
    problem = Problem() if problem is None else problem
    require_int("workers", workers, minimum=1)
    require_int("batch_per_worker", batch_per_worker, minimum=1)
    require_number("lr", lr, minimum=0.0, exclusive_minimum=True)
    require_int("seed", seed, minimum=0)
    require_number("alpha", alpha, minimum=0.0, maximum=1.0)
    require_choice("gossip", gossip, GOSSIP_VARIANTS)
    if target_accuracy is not None:
        require_number("target_accuracy", target_accuracy, minimum=0.0, maximum=1.0)
    if target_loss is not None:
        require_number("target_loss", target_loss, minimum=0.0, exclusive_minimum=True)
        with_loss = True
    require_int("evaluate_every", evaluate_every, minimum=1)
    _validate_log(update_log, workers)

    draws = _Minibatches(seed, workers, problem.train_samples, batch_per_worker)
    center = initial_model(problem)
    history = [center]  # server versions, for stale push gradients
    # Worker models, one slice each.
    local = np.zeros((workers,) + center.shape)
    judge_center = bool(set(update_log["kind"]) & _CENTER_KINDS)
    # Local steps not applied yet, at most one per worker, each on its worker's current
    # model: every row that reads or changes a worker's model or draws from its stream
    # applies them first, so each model sees the same operations, and each stream the
    # same draws, in the same order as a row-by-row replay. Pending steps of distinct
    # workers are independent and are applied together as one stacked gradient.
    pending: list[int] = []
    is_pending = np.zeros(workers, dtype=bool)

    def apply_pending():
        stepping = np.array(pending)
        before = local[stepping]
        local[stepping] = before - lr * _gradients(problem, before,
                                                   draws.take(stepping))
        pending.clear()
        is_pending[stepping] = False

    results = []
    last_row = len(update_log)
    columns = zip(update_log["time_s"].tolist(), update_log["worker"].tolist(),
                  update_log["kind"].tolist(), update_log["read_version"].tolist(),
                  update_log["peer"].tolist(), strict=True)
    for row, (time_s, w, kind, read_version, peer) in enumerate(columns):
        if kind == "local":
            if is_pending[w]:
                apply_pending()
            pending.append(w)
            is_pending[w] = True
        elif kind == "push":
            if not 0 <= read_version < len(history):
                raise ConfigError(f"update_log.read_version[{row}]", int(read_version),
                                  f"a server version in 0..{len(history) - 1} (versions "
                                  "applied so far)")
            if is_pending[w]:
                apply_pending()
            center = center - lr * gradient(problem, history[read_version],
                                            draws.take(np.array([w]))[0])
            history.append(center)
        elif kind == "sync":
            if pending:
                apply_pending()
            everyone = np.arange(workers)
            gradients = _gradients(problem, np.broadcast_to(center, local.shape),
                                   draws.take(everyone))
            # Summed in worker order, as the mean of the workers' gradients is defined.
            center = center - lr * (gradients.sum(axis=0) / workers)
            history.append(center)
        elif kind == "elastic":
            if is_pending[w]:
                apply_pending()
            difference = alpha * (local[w] - center)
            local[w] = local[w] - difference
            center = center + difference
            history.append(center)
        elif kind == "gossip":
            if is_pending[w] or is_pending[peer]:
                apply_pending()
            mean = 0.5 * (local[w] + local[peer])
            if gossip in ("symmetric", "pull"):
                local[w] = mean
            if gossip in ("symmetric", "push"):
                local[peer] = mean
        else:  # average
            if pending:
                apply_pending()
            local[:] = local.sum(axis=0) / workers
        if (row + 1) % evaluate_every and row + 1 < last_row:
            continue
        if judge_center:
            judged = center
        else:
            if pending:
                apply_pending()
            # A sum over the first axis adds the models in worker order, one at a time.
            judged = local.sum(axis=0) / workers
        if not np.isfinite(judged).all():
            break
        if with_loss:
            accuracy, loss = evaluate(problem, judged)
        else:
            accuracy, loss = accuracy_of(problem, judged), math.nan
        results.append((row + 1, float(time_s), kind, accuracy, loss))
        if target_accuracy is not None and accuracy >= target_accuracy:
            break
        if target_loss is not None and loss <= target_loss:
            break
    return pd.DataFrame(results, columns=["update", "time_s", "kind", "test_accuracy",
                                          "test_loss"])


@cache
def _bulk_matches_integers(samples: int, batch: int) -> bool:
    """Whether this numpy still draws bounded integers the way :class:`_Minibatches`
    replays them (checked on a throwaway stream; a numpy that changed its rule then
    gets the plain ``integers`` path, slower but the same draws)."""
    reference = stream(0, "emulation.bulk-check")
    replay = _Minibatches.__new__(_Minibatches)
    replay._init(0, 1, samples, batch, bulk=True, rngs=[stream(0, "emulation.bulk-check")])
    worker = np.zeros(1, dtype=np.intp)
    return all(np.array_equal(replay.take(worker)[0],
                              reference.integers(0, samples, size=batch))
               for _ in range(64))


class _Minibatches:
    """Each worker's minibatches, ``stream(seed, f"emulation.worker-{w}").integers(0,
    samples, size=batch)`` one call after another, drawn for many workers at once.

    numpy (1.17 and later) draws a bounded integer below ``samples < 2**32`` by Lemire's
    multiply-and-reject on the generator's 32-bit outputs, which PCG64 cuts from each
    64-bit output low half first. Reading the raw 64-bit outputs in bulk and applying
    the same rule gives the same integers while the Python overhead of one ``integers``
    call per minibatch goes away. A rejection (probability ``2**32 % samples / 2**32``
    per draw, about 3e-7 at 2000 samples) is replayed one draw at a time. Other sizes,
    and a generator other than PCG64, fall back to ``integers``.
    """

    def __init__(self, seed: int, workers: int, samples: int, batch: int):
        rngs = [stream(seed, f"emulation.worker-{w}") for w in range(workers)]
        bulk = (1 <= samples - 1 < 0xFFFFFFFF
                and all(isinstance(rng.bit_generator, np.random.PCG64) for rng in rngs)
                and _bulk_matches_integers(samples, batch))
        self._init(seed, workers, samples, batch, bulk=bulk, rngs=rngs)

    def _init(self, seed: int, workers: int, samples: int, batch: int, *, bulk: bool,
              rngs: list) -> None:
        self._rngs = rngs
        self._samples = samples
        self._batch = batch
        self._bulk = bulk
        # Draws below this leftover are rejected (numpy: (UINT32_MAX - rng) % rng_excl).
        self._threshold = 2**32 % samples
        self._raw_per_refill = max(256, 2 * batch)
        self._bits = np.zeros((workers, batch + 2 * self._raw_per_refill), dtype=np.uint64)
        self._filled = np.zeros(workers, dtype=np.int64)
        self._next = np.zeros(workers, dtype=np.int64)

    def _refill(self, w: int) -> None:
        left = self._bits[w, self._next[w]:self._filled[w]].copy()
        raw = self._rngs[w].bit_generator.random_raw(self._raw_per_refill)
        halves = np.empty(2 * len(raw), dtype=np.uint64)
        halves[0::2] = raw & 0xFFFFFFFF
        halves[1::2] = raw >> 32
        self._bits[w, :len(left)] = left
        self._bits[w, len(left):len(left) + len(halves)] = halves
        self._filled[w] = len(left) + len(halves)
        self._next[w] = 0

    def _one_at_a_time(self, w: int) -> np.ndarray:
        out = np.empty(self._batch, dtype=np.int64)
        for i in range(self._batch):
            while True:
                if self._next[w] == self._filled[w]:
                    self._refill(w)
                scaled = int(self._bits[w, self._next[w]]) * self._samples
                self._next[w] += 1
                if scaled & 0xFFFFFFFF >= self._threshold:
                    break
            out[i] = scaled >> 32
        return out

    def take(self, workers: np.ndarray) -> np.ndarray:
        """One minibatch (row of training indices) for each of the distinct ``workers``."""
        if not self._bulk:
            return np.stack([self._rngs[w].integers(0, self._samples, size=self._batch)
                             for w in workers])
        for w in workers[self._next[workers] + self._batch > self._filled[workers]]:
            self._refill(w)
        start = self._next[workers]
        bits = self._bits[workers[:, None], start[:, None] + np.arange(self._batch)]
        scaled = bits * np.uint64(self._samples)
        out = (scaled >> np.uint64(32)).astype(np.int64)
        self._next[workers] = start + self._batch
        rejected = ((scaled & np.uint64(0xFFFFFFFF)) < self._threshold).any(axis=1)
        for k in np.flatnonzero(rejected):
            self._next[workers[k]] = start[k]
            out[k] = self._one_at_a_time(workers[k])
        return out


def updates_to_target(update_log: pd.DataFrame, workers: int, batch_per_worker: int,
                      lr: float, seed: int, target_accuracy: float,
                      problem: Problem | None = None, **options) -> float:
    """Updates (log rows) until held-out accuracy first reaches ``target_accuracy``;
    ``math.inf`` when the log ends before it does."""
    trace = emulate(update_log, workers, batch_per_worker, lr, seed, problem=problem,
                    target_accuracy=target_accuracy, with_loss=False, **options)
    reached = trace["test_accuracy"] >= target_accuracy
    return float(trace["update"][reached].iloc[0]) if reached.any() else math.inf


def staleness_factor(update_log: pd.DataFrame, workers: int, batch_per_worker: int,
                     lr: float, seeds: tuple[int, ...], target_accuracy: float,
                     problem: Problem | None = None, **options) -> float:
    """Gradient updates a schedule needs over those of synchronous SGD, same samples each.

    ``factor = mean over seeds of gradient updates to target (schedule)
    / mean over seeds of steps to target (synchronous SGD)``, where the reference takes
    as many samples per step as one gradient update of the schedule does
    (``workers * batch_per_worker`` for a ``sync`` log, ``batch_per_worker`` otherwise)
    and uses the same learning rate and seeds. Gradient updates are the rows that
    consume a minibatch (``sync``, ``push``, ``local``); exchanges (``elastic``,
    ``gossip``, ``average``) cost time in the engine but no samples. A synchronous log
    scores 1 by construction.

    Transfer to a large workload, and what it assumes: the schedule's steps to target
    are taken as ``factor * S(B)``, with ``S(B)`` from :mod:`models.convergence` at
    ``B`` = samples per gradient update (per-worker batch for asynchronous and local
    schemes). This assumes that (1) the penalty of staleness or model disagreement is
    a multiplier on steps that depends on the schedule's shape (staleness in versions,
    exchange period, number of workers) and not on the model, the data or the
    batch-size regime; (2) the learning rate is the same for the schedule and its
    reference, as a practitioner would not retune per schedule, although stale
    gradients tolerate smaller rates better; (3) a convex problem is representative:
    on non-convex networks, staleness and averaging can also change the quality
    reached, not only the speed, and small amounts of gradient noise can even help.
    The factor is therefore a first-order estimate; it is measured, not assumed, but
    on a proxy problem. ``math.inf`` means the schedule never reached the target.
    """
    if not seeds:
        raise ConfigError("seeds", seeds, "at least one seed")
    problem = Problem() if problem is None else problem
    consumes = update_log["kind"].isin(["sync", "push", "local"]).to_numpy()
    # The reference draws the same minibatches as a sync log (all workers) or as one
    # worker; a longer log than the schedule's lets a slower reference still finish.
    reference_workers = workers if (update_log["kind"] == "sync").any() else 1
    reference_log = synchronous_log(4 * len(update_log) + 100)
    schedule = []
    reference = []
    for seed in seeds:
        trace = emulate(update_log, workers, batch_per_worker, lr, seed, problem=problem,
                        target_accuracy=target_accuracy, with_loss=False, **options)
        reached = trace["test_accuracy"].to_numpy() >= target_accuracy
        schedule.append(float(np.cumsum(consumes[:len(trace)])[-1]) if reached.any()
                        else math.inf)
        reference.append(updates_to_target(reference_log, reference_workers, batch_per_worker,
                                           lr, seed, target_accuracy, problem=problem))
    return float(np.mean(schedule) / np.mean(reference))
