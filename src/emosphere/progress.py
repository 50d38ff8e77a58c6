"""The progress bar of a prediction run: files done, hours of audio, and an ETA from the audio.

The model's time goes with the audio it hears, not with the number of files:
one 2-hour recording takes as long as 1,200 clips of 6 s. So the meter counts
work in seconds of windows (what the model runs; overlapping windows count
twice) and estimates the ETA from them:

* work known: the windows of the sources decoded so far; the sources not yet
  decoded are assumed to hold the mean work of those decoded (the stream is
  read lazily, so their durations are not known);
* work done: the windows of the batches run so far, updated after every batch,
  so the first figures come while the first pool of sources is under way;
* time: the time spent decoding (until a pool is decoded) and the time spent
  in the model (until a batch is done) are counted apart, since a pool of
  sources is decoded before its first batch runs;
* ETA = the work left at the model's rate so far, plus the sources left to
  decode at the decoding rate so far.

The bar is redrawn after a batch at most every :data:`REFRESH_SECONDS` (and
always for the first batch), so a log file does not fill with lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tqdm import tqdm

from .audio import SAMPLE_RATE

REFRESH_SECONDS = 0.5


class Meter:
    """Progress of ``total`` sources (None: unknown); shown on stderr when ``enabled``."""

    def __init__(self, total: int | None, *, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.clock = clock
        self.started = self.shown = self.last = clock()
        self.decoding = self.modelling = 0.0
        """Seconds spent until a pool was decoded, and until a batch was done."""
        self.files_known = self.files_done = 0
        self.work_known = self.work_done = self.audio_done = 0.0
        self.bar = tqdm(total=100, disable=not enabled, bar_format="predict: {bar} {desc}")

    def known(self, files: int, work: float) -> None:
        """``files`` more sources were decoded, whose windows hold ``work`` seconds."""
        self.files_known += files
        self.work_known += work
        self.decoding += self._lap()

    def batch(self, lengths: Iterable[int]) -> None:
        """A batch of windows of these lengths (16 kHz samples) was run."""
        first = self.work_done == 0
        self.work_done += sum(map(int, lengths)) / SAMPLE_RATE
        self.modelling += self._lap()
        if first or self.clock() - self.shown >= REFRESH_SECONDS:
            self.show()

    def file(self, audio_seconds: float) -> None:
        """A source was handed on (``audio_seconds``: its duration, 0 for a failure)."""
        self.files_done += 1
        self.audio_done += audio_seconds

    @property
    def work(self) -> float:
        """The work of the whole run: known, plus the mean for each source not yet decoded."""
        if not self.total or not self.files_known or self.files_known >= self.total:
            return self.work_known
        return self.work_known * self.total / self.files_known

    def _lap(self) -> float:
        """Seconds since the last event (a pool decoded, a batch done); a new lap starts."""
        now = self.clock()
        lap, self.last = now - self.last, now
        return lap

    def eta(self) -> float | None:
        """Seconds until the run ends, at the rates so far; None before any work is done."""
        if self.work_done <= 0:
            return None
        model = max(self.work - self.work_done, 0.0) * self.modelling / self.work_done
        files_left = max((self.total or 0) - self.files_known, 0)
        return model + (files_left * self.decoding / self.files_known if self.files_known else 0.0)

    def show(self, refresh: bool = True) -> None:
        self.shown = self.clock()
        elapsed, eta, work = self.shown - self.started, self.eta(), self.work
        self.bar.n = round(100 * min(self.work_done / work, 1.0), 1) if work else 0
        files = f"{self.files_done}/{self.total}" if self.total is not None else f"{self.files_done}"
        rate = self.audio_done / max(elapsed, 1e-9)
        self.bar.set_description_str(
            f"{self.bar.n:.0f}% | {files} files, {self.audio_done / 3600:.3f} h of audio ({rate:.0f} h/h) | "
            f"{tqdm.format_interval(elapsed)} elapsed, ETA {'?' if eta is None else tqdm.format_interval(eta)}",
            refresh=refresh,
        )

    def close(self) -> None:
        self.show(refresh=False)  # closing draws it
        self.bar.close()
