import numpy as np
import pandas as pd
import pytest

import emosphere.bootstrap as bootstrap
from emosphere.bootstrap import (
    ComparisonError,
    align_predictions,
    comparison_markdown,
    format_interval,
    paired_comparison,
    score_intervals,
    speaker_groups,
)
from emosphere.metrics import ccc, region_metrics

BETA, NOISE, BIAS = np.array([0.8, 0.5, 0.3]), np.array([0.5, 0.7, 0.9]), np.array([0.2, -0.1, 0.0])
TRUE_CCC = 2 * BETA / (BETA**2 + NOISE**2 + 1 + BIAS**2)
"""Population CCC of y ~ N(4, 1), p = 4 + BIAS + BETA (y - 4) + N(0, NOISE^2), per dimension."""


def simulate(rng, n):
    y = rng.normal(4, 1, (n, 3))
    return 4 + BIAS + BETA * (y - 4) + rng.normal(0, 1, (n, 3)) * NOISE, y


def reference_rows(n, resamples, seed, groups=None):
    """The rows of each replicate, drawn as the module docstring says, one replicate at a time."""
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(resamples):
            yield rng.integers(0, n, n)
        return
    speakers = pd.unique(np.asarray(groups))  # units are numbered in order of first appearance
    members = [np.flatnonzero(np.asarray(groups) == s) for s in speakers]
    for _ in range(resamples):
        yield np.concatenate([members[k] for k in rng.integers(0, len(speakers), len(speakers))])


def reference_intervals(pred, target, region_pred, region_target, rows):
    """Percentile intervals of statistics recomputed on the resampled rows."""
    found = []
    for index in rows:
        values = ccc(pred[index], target[index])
        regions = region_metrics(region_pred[index], region_target[index], 8)
        found.append([*values, values.mean(), regions["accuracy"], regions["macro_f1"], regions["uar"]])
    return np.percentile(found, [2.5, 97.5], axis=0)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    pred, target = simulate(rng, 120)
    region_target = rng.integers(0, 8, 120)
    region_pred = np.where(rng.random(120) < 0.5, region_target, rng.integers(0, 8, 120))
    speakers = rng.integers(0, 15, 120).astype(str)
    return pred, target, region_pred, region_target, speakers


def flat(result):
    return np.array([*result["ccc"].values(), *result["region"].values()]).T


@pytest.mark.parametrize("by_speaker", [False, True])
def test_intervals_equal_statistics_recomputed_on_resampled_rows(scored, by_speaker, monkeypatch):
    pred, target, region_pred, region_target, speakers = scored
    groups = speakers if by_speaker else None
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 1000)  # several chunks: chunking changes nothing
    result = score_intervals(
        pred, target, region_pred=region_pred, region_target=region_target, num_classes=8, groups=groups, seed=5,
        resamples=300,
    )  # fmt: skip
    expected = reference_intervals(pred, target, region_pred, region_target, reference_rows(120, 300, 5, groups))
    np.testing.assert_allclose(flat(result), expected, rtol=0, atol=1e-12)
    assert result["by"] == ("speaker" if by_speaker else "utterance")
    assert result["units"] == (len(set(speakers)) if by_speaker else 120)
    assert (result["resamples"], result["seed"], result["level"]) == (300, 5, 0.95)


def test_the_95_interval_covers_the_true_ccc_in_93_to_97_percent_of_draws():
    rng = np.random.default_rng(0)
    covered = np.zeros(4)
    for draw in range(400):
        pred, target = simulate(rng, 100)
        intervals = score_intervals(pred, target, seed=draw)["ccc"]
        covered += [low <= true <= high for (low, high), true in zip(intervals.values(), [*TRUE_CCC, TRUE_CCC.mean()])]
    coverage = covered / 400
    assert 0.93 <= coverage[3] <= 0.97, coverage  # the mean CCC
    assert 0.93 <= coverage[:3].mean() <= 0.97, coverage  # the three dimensions, 1,200 intervals


def test_speakers_must_be_resampled_when_their_utterances_are_correlated():
    """Speaker effects in labels and errors: resampling utterances pretends to know more than the
    data says (intervals too narrow); resampling speakers covers the true CCC."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 8)
    true = 2 * 0.7 / (0.7**2 + 0.25 + 0.16 + 1 + 0.2**2)
    covered = {"utterance": 0, "speaker": 0}
    for draw in range(120):
        target = 4 + rng.normal(0, 0.6, (40, 3))[groups] + rng.normal(0, 0.8, (320, 3))
        pred = 4.2 + 0.7 * (target - 4) + rng.normal(0, 0.5, (40, 3))[groups] + rng.normal(0, 0.4, (320, 3))
        for by, unit in (("utterance", None), ("speaker", groups)):
            intervals = list(score_intervals(pred, target, groups=unit, seed=draw, resamples=400)["ccc"].values())
            covered[by] += sum(low <= true <= high for low, high in intervals[:3])
    assert covered["utterance"] / 360 < 0.88 < covered["speaker"] / 360, covered  # 0.79 and 0.93


def test_unknown_speakers_are_groups_of_their_own():
    codes = speaker_groups(["7", "Unknown", "7", None, "12", "unknown", ""])
    assert codes[0] == codes[2] and codes[0] != codes[4]
    assert len({codes[1], codes[3], codes[5], codes[6]} | {codes[0], codes[4]}) == 6


def test_paired_differences_equal_a_loop_over_the_same_resampled_files(scored):
    pred, target, *_ = scored
    other = pred + np.random.default_rng(1).normal(0, 0.3, pred.shape)
    table = paired_comparison(target, {"a": pred, "b": other}, resamples=250, seed=2)
    differences = []
    for index in reference_rows(120, 250, 2):
        a, b = ccc(other[index], target[index]), ccc(pred[index], target[index])
        differences.append([*(a - b), a.mean() - b.mean()])
    differences = np.array(differences)
    low, high = np.percentile(differences, [2.5, 97.5], axis=0)
    tail = np.minimum((differences <= 0).sum(0), (differences >= 0).sum(0))
    assert table["dimension"].tolist() == ["arousal", "valence", "dominance", "mean"]
    assert set(table["system"]) == {"b"} and set(table["reference"]) == {"a"}
    np.testing.assert_allclose(table["ci_low"], low, atol=1e-12)
    np.testing.assert_allclose(table["ci_high"], high, atol=1e-12)
    np.testing.assert_allclose(table["p_value"], np.minimum(1, 2 * (tail + 1) / 251))
    full = ccc(other, target) - ccc(pred, target)
    np.testing.assert_allclose(table["difference"], [*full, full.mean()], atol=1e-12)


def test_a_real_difference_is_resolved_and_no_difference_is_not(scored):
    pred, target, *_ = scored
    worse = pred + np.random.default_rng(1).normal(0, 2.0, pred.shape)
    table = paired_comparison(target, {"ref": pred, "same": pred.copy(), "worse": worse}, resamples=400)
    same, worse_rows = table[table["system"] == "same"], table[table["system"] == "worse"]
    assert (same["difference"] == 0).all() and (same["p_value"] == 1).all()
    assert (worse_rows["ci_high"] < 0).all() and (worse_rows["p_value"] == 2 / 401).all()
    markdown = comparison_markdown(table)
    assert "| worse | ref | mean |" in markdown and "| yes |" in markdown and "| no |" in markdown
    assert "400 replicates resampling the 120 utterances" in markdown


def test_a_system_of_several_runs_is_scored_by_their_mean_ccc(scored):
    pred, target, *_ = scored
    rng = np.random.default_rng(3)
    runs = [pred + rng.normal(0, 0.4, pred.shape) for _ in range(3)]
    table = paired_comparison(target, {"ref": pred, "seeds": runs}, resamples=100, seed=4)
    expected = np.mean([ccc(r, target) for r in runs], axis=0) - ccc(pred, target)
    np.testing.assert_allclose(table["difference"].to_numpy()[:3], expected, atol=1e-12)
    assert table["runs"].iloc[0] == 3 and table["reference_runs"].iloc[0] == 1
    assert "not training randomness" in comparison_markdown(table)


def prediction_table(files, pred, target):
    table = pd.DataFrame({"FileName": files})
    table[list(bootstrap.PREDICTED_COLUMNS)] = pred
    table[list(bootstrap.TRUE_COLUMNS)] = target
    return table


def test_tables_are_aligned_by_file(scored):
    pred, target, *_, speakers = scored
    files = [f"f{i:03d}.wav" for i in range(120)]
    a = prediction_table(files, pred, target)
    b = prediction_table(files, pred + 0.1, target).sample(frac=1, random_state=0)  # another order
    aligned = align_predictions({"a": a, "b": b}, speakers=dict(zip(files, speakers)))
    assert aligned.files == files
    np.testing.assert_array_equal(aligned.systems["b"][0], pred + 0.1)
    np.testing.assert_array_equal(aligned.target, target)
    np.testing.assert_array_equal(aligned.groups, speaker_groups(speakers))


def test_tables_of_other_files_or_labels_are_refused_naming_them(scored):
    pred, target, *_ = scored
    files = [f"f{i:03d}.wav" for i in range(120)]
    a = prediction_table(files, pred, target)
    fewer = a.drop(index=[3, 4])
    with pytest.raises(ComparisonError, match=r"b lacks 2 \(f003.wav, f004.wav\) and has 0"):
        align_predictions({"a": a, "b": fewer})
    with pytest.raises(ComparisonError, match=r"b run 2 lacks 2 .* and has 0"):
        align_predictions({"a": a, "b": [a, fewer]})
    relabelled = a.copy()
    relabelled.loc[7, "true_EmoVal"] += 0.5
    with pytest.raises(ComparisonError, match=r"different true labels for 1 file\(s\) \(f007.wav\)"):
        align_predictions({"a": a, "b": relabelled})
    with pytest.raises(ComparisonError, match="b: files listed twice: f000.wav"):
        align_predictions({"a": a, "b": pd.concat([a, a.head(1)])})
    with pytest.raises(ComparisonError, match=r"b: no columns \['true_EmoDom'\]"):
        align_predictions({"a": a, "b": a.drop(columns="true_EmoDom")})


def test_format_interval():
    assert format_interval(0.51234, [0.4871, 0.53849]) == "0.512 [0.487, 0.538]"
