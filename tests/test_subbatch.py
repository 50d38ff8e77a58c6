import pytest

from emosphere.subbatch import LengthBuckets, plan


def padded_cost(lengths, groups):
    return sum(len(g) * max(lengths[i] for i in g) for g in groups)


def test_plan_covers_the_batch_with_length_sorted_groups():
    lengths = [44000, 176000, 60000, 48000, 170000, 100000, 96000, 45000]
    groups = plan(lengths, 4)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert 1 < len(groups) <= 4
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(lengths, reverse=True)  # consecutive runs of the sorted lengths
    assert padded_cost(lengths, groups) < 0.8 * padded_cost(lengths, [list(range(len(lengths)))])


def test_plan_keeps_similar_lengths_whole():
    # Splitting would save less padding than one longest utterance costs.
    assert plan([100, 98, 97, 99], 4) == [[0, 3, 1, 2]]
    assert plan([100, 10], 1) == [[0, 1]]
    assert plan([5], 4) == [[0]]


def test_plan_is_optimal_for_two_groups():
    lengths = [10, 10, 10, 50, 50, 50]
    assert sorted(map(sorted, plan(lengths, 2))) == [[0, 1, 2], [3, 4, 5]]


def test_plan_groups_by_padded_length():
    # Lengths that round up to the same bucket are never split apart.
    groups = plan([10, 12, 11, 30, 31], 4, pad_to=lambda n: 16 if n <= 16 else 32)
    assert sorted(map(sorted, groups)) == [[0, 1, 2], [3, 4]]


def test_length_buckets_form_a_bounded_aligned_ladder():
    buckets = LengthBuckets(599)
    assert buckets.rungs[-1] == 600 and all(r % 8 == 0 for r in buckets.rungs)
    assert all(b / a <= 1.25 + 8 / a for a, b in zip(buckets.rungs, buckets.rungs[1:]))
    # 2.75-12 s of audio (137-599 frames) meets only a few rungs.
    assert len({buckets.round_up(f) for f in range(137, 600)}) <= 8
    for frames in (1, 8, 9, 137, 481, 599, 600):
        assert buckets.round_up(frames) >= frames
    assert buckets.round_up(601) == 608  # above the ladder: aligned only
    assert buckets.round_up(481) == 600 and buckets.round_up(480) == 480


@pytest.mark.parametrize("max_groups", [1, 2, 3, 8])
def test_plan_never_uses_more_groups_than_allowed(max_groups):
    lengths = list(range(1000, 17000, 1000))
    assert len(plan(lengths, max_groups)) <= max_groups
