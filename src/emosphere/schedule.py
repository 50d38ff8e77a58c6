"""The service's scheduler: lane threads that run the model over the windows of concurrent uploads,
fairly to short ones, and drop the work of uploads nobody waits for any more.

A long upload is many windows and a 1 s clip one; running uploads one after the
other would keep the clip waiting for every window of a long file that came
first. :class:`Batcher` runs windows, not uploads: each pass takes a batch of
windows of the upload with the fewest left (see its docstring). Its answers are
the engine's (:meth:`emosphere.engine.Predictor.forward` on padded batches,
then :meth:`~emosphere.engine.Predictor.collect`): batching and the order of
passes never change a prediction.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from .engine import Item, Predictor, WindowOutputs, pad

log = logging.getLogger(__name__)


class Busy(Exception):
    """More uploads are waiting for the model than :attr:`Settings.max_pending`."""


@dataclass(eq=False)
class Job:
    """An upload in the model's hands: its windows still to run and the outputs of those that ran."""

    item: Item
    future: Future = field(default_factory=Future)
    todo: list[tuple[int, int]] = field(default_factory=list)
    outputs: list[WindowOutputs] = field(default_factory=list)
    arrived: float = field(default_factory=time.monotonic)
    running: bool = False
    """A pass with windows of this job is in a lane now."""


class Batcher:
    """The lanes (threads) that run ``predictor``: :meth:`submit` a decoded upload, get a future of its
    :class:`Prediction`. Scheduling, fair to short uploads:

    * each pass of a lane takes the upload with the fewest windows left (the oldest among equals) that
      no other lane is running, and up to a batch of its windows; with ``cross_request``, windows of
      the next uploads in that order fill the batch;
    * so a short upload never waits for the rest of a long one: at most for the passes in flight,
      and with two lanes (the default) one lane is free for it while the other runs the long one;
    * an upload whose future is cancelled (its client went away) is dropped with its windows.
    """

    def __init__(
        self, predictor: Predictor, *, lanes: int = 2, batch_wait: float = 0.0, cross_request: bool = True,
        max_pending: int = 64,
    ) -> None:  # fmt: skip
        self.predictor = predictor
        self.batch_wait, self.cross_request, self.max_pending = batch_wait, cross_request, max_pending
        self.pools = 0
        """Passes through the model so far (a batch of windows of one or more uploads each)."""
        self.requests = 0
        """Uploads answered so far."""
        self._jobs: list[Job] = []
        self._changed = threading.Condition()
        self._stopping = False
        self._lanes = [
            threading.Thread(target=self._lane, name=f"emosphere-lane-{n}", daemon=True) for n in range(lanes)
        ]

    def start(self) -> None:
        for lane in self._lanes:
            lane.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        for lane in self._lanes:
            lane.join()

    @property
    def pending(self) -> int:
        """Uploads waiting for the model: submitted, not answered, and not in a lane now."""
        return sum(not job.running for job in self._jobs)

    def submit(self, item: Item) -> Future:
        with self._changed:
            if self.pending >= self.max_pending:
                raise Busy
            job = Job(item, todo=list(item.spans))
            self._jobs.append(job)
            self._changed.notify_all()
        return job.future

    def _ready(self) -> list[Job]:
        """The jobs a lane may take now, fewest windows left first; cancelled ones are dropped."""
        self._jobs = [job for job in self._jobs if job.running or not job.future.cancelled()]
        return sorted((job for job in self._jobs if job.todo and not job.running), key=lambda job: len(job.todo))

    def _take(self) -> list[tuple[Job, list[tuple[int, int]]]] | None:
        """The next pass, as (job, spans) pairs, once there is one (with ``cross_request``, after up to
        ``batch_wait`` for more uploads unless a batch is waiting); None to stop."""
        size = self.predictor.options.batch_size
        with self._changed:
            while not self._stopping:
                ready = self._ready()
                fresh = [job.arrived for job in ready if not job.outputs]
                wait = min(fresh, default=-math.inf) + self.batch_wait - time.monotonic()
                if ready and (not self.cross_request or sum(len(j.todo) for j in ready) >= size or wait <= 0):
                    break
                self._changed.wait(timeout=wait if ready else None)
            else:
                return None
            plan = []
            for job in ready if self.cross_request else ready[:1]:
                spans, job.todo = job.todo[:size], job.todo[size:]
                job.running, size = True, size - len(spans)
                plan.append((job, spans))
                if not size:
                    break
            return plan

    def _lane(self) -> None:
        while (plan := self._take()) is not None:
            windows = [(job.item, span) for job, spans in plan for span in spans]
            try:
                outputs = self.predictor.forward(pad(windows))
            except Exception as error:
                log.exception("the model failed on a batch of %d uploads", len(plan))
                self._finish(plan, error)
                continue
            for job, _ in plan:
                job.outputs.append(outputs.select(outputs.owner == job.item.index))
            self._finish(plan)

    def _finish(self, plan: list[tuple[Job, list[tuple[int, int]]]], error: Exception | None = None) -> None:
        """After a pass: answer the jobs it completed (or, on ``error``, all of them); let the lanes go on."""
        with self._changed:
            self.pools += error is None
            done = [job for job, _ in plan if error is not None or not job.todo or job.future.cancelled()]
            for job, _ in plan:
                job.running = False
            self._jobs = [job for job in self._jobs if job not in done]
            self.requests += sum(not job.future.cancelled() for job in done)
            self._changed.notify_all()
        for job in done:
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled: nobody waits for it
            try:
                if error is not None:
                    raise error
                job.future.set_result(self.predictor.collect([job.item], job.outputs)[0])
            except Exception as failure:  # noqa: BLE001 - the request's answer, never the lane's end
                job.future.set_exception(failure)
