"""The one place a run's processes report what happened.

Processes call :meth:`Recorder.iteration` when a worker finishes an iteration and
:meth:`Recorder.update` when the model changes; the recorder keeps columns in plain
lists (cheap appends) and turns them into DataFrames once, at the end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.emulation import LOG_COLUMNS

ITERATION_COLUMNS = ("iteration", "worker", "start_s", "compute_s", "communication_s",
                     "waiting_s", "end_s")


class Recorder:
    def __init__(self) -> None:
        self._iterations: list[tuple] = []
        self._updates: list[tuple] = []
        self._staleness: list[int] = []
        self._staleness_time: list[float] = []
        #: Center-model updates applied so far (the version the next one lands on).
        self.version = 0
        #: (worker, failed_s, back_s) of every failure that cost a compute phase.
        self.failures: list[tuple[int, float, float]] = []

    def iteration(self, iteration: int, worker: int, start_s: float, compute_s: float,
                  communication_s: float, waiting_s: float, end_s: float) -> None:
        """One worker's iteration; the three parts add up to ``end_s - start_s``."""
        self._iterations.append((iteration, worker, start_s, compute_s, communication_s,
                                 waiting_s, end_s))

    def update(self, time_s: float, kind: str, *, worker: int = -1, read_version: int = -1,
               peer: int = -1, step: int = -1, counts_as_version: bool = True) -> int:
        """One row of the update log. Updates of the center/server model (``sync``,
        ``push``, ``elastic``) advance the version; ``push`` and ``elastic`` rows add a
        staleness sample ``version - read_version`` (the version they land on minus the
        one they were computed from). Returns the version the update landed on."""
        version = self.version
        self._updates.append((time_s, worker, kind, read_version, peer, step))
        if kind in ("push", "elastic"):
            self._staleness.append(version - read_version)
            self._staleness_time.append(time_s)
        if counts_as_version and kind in ("sync", "push", "elastic"):
            self.version += 1
        return version

    def failure(self, worker: int, failed_s: float, back_s: float) -> None:
        self.failures.append((worker, failed_s, back_s))

    def iterations_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(self._iterations, columns=list(ITERATION_COLUMNS))
        frame = frame.astype({"iteration": np.int64, "worker": np.int64,
                              **{c: float for c in ITERATION_COLUMNS[2:]}})
        return frame.sort_values(["iteration", "worker"], kind="stable").reset_index(drop=True)

    def update_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(self._updates, columns=list(LOG_COLUMNS))
        return frame.astype({"time_s": float, "worker": np.int64, "kind": object,
                             "read_version": np.int64, "peer": np.int64, "step": np.int64})

    def staleness_series(self) -> pd.Series:
        return pd.Series(np.asarray(self._staleness, dtype=np.int64), name="staleness",
                         index=pd.Index(np.asarray(self._staleness_time, dtype=float),
                                        name="time_s"))
