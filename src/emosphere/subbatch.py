"""Padding-free encoding: a batch split into length-sorted sub-batches.

Random training batches (the paper's) mix 3 s and 11 s utterances, so about
40 % of a padded batch is padding. The encoder treats every utterance on its
own, so a batch can be encoded in groups of similar length and put back in
order before pooling and the loss: the result is the same, the padding is
not computed.

:func:`plan` chooses the groups: utterances sorted by length, cut into at most
``max_groups`` consecutive runs, each padded to ``pad_to`` its longest. It
minimises the padded samples plus, for every group after the first, the
samples of one longest utterance (a further encoder call must save more than
that; so a batch of similar lengths stays whole).

:class:`LengthBuckets`: for compiled training steps, lengths are rounded up to
a fixed geometric ladder of frame counts (each rung ``ratio`` times the next,
multiples of ``align``), so that a compiled block sees a bounded number of
distinct lengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def plan(lengths: Sequence[int], max_groups: int, pad_to: Callable[[int], int] = int) -> list[list[int]]:
    """Groups of indices into ``lengths``, longest first; see the module docstring."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if max_groups <= 1 or len(order) <= 1:
        return [order]
    padded = [pad_to(lengths[i]) for i in order]  # the padded length of a group that starts at i
    n, penalty = len(order), padded[0]
    # best[j]: (cost, groups) covering order[:j] with `groups` cuts; one pass per group count.
    best = [(0, [])] + [(math.inf, [])] * n
    result = (math.inf, [])
    for _ in range(min(max_groups, n)):
        new = [(math.inf, [])] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j):
                cost = best[i][0] + (j - i) * padded[i] + (penalty if i else 0)
                if cost < new[j][0]:
                    new[j] = (cost, best[i][1] + [(i, j)])
        best = new
        if best[n][0] < result[0]:
            result = best[n]
    return [order[i:j] for i, j in result[1]]


class LengthBuckets:
    """A ladder of frame counts: ``top`` (aligned) and below it each rung ``1 / ratio`` of the last."""

    def __init__(self, top: int, ratio: float = 1.25, align: int = 8) -> None:
        self.align = align
        rungs, value = set(), float(top)
        while value >= align:
            rungs.add(self._aligned(value))
            value /= ratio
        self.rungs = sorted(rungs | {align})

    def _aligned(self, frames: float) -> int:
        return math.ceil(frames / self.align) * self.align

    def round_up(self, frames: int) -> int:
        """The smallest rung >= ``frames``; above the ladder, ``frames`` aligned."""
        return next((rung for rung in self.rungs if rung >= frames), self._aligned(frames))
