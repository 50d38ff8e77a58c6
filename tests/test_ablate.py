"""Ablation sets: checked before any training, one run per variant, resumable, one table."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import train_args

from emosphere import ablate
from emosphere.cli import main
from emosphere.config import ConfigError
from emosphere.rundir import RunDir


def write_set(folder, corpus, variants, **extra):
    """An ablation set over the tiny test recipe (1 epoch)."""
    base = {}
    for item in train_args(corpus, folder / "unused", "trainer.max_epochs=1")[1:]:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = base
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    values = {"base": "base.yaml", "output_dir": str(folder / "runs"), "split": "Test1", "variants": variants, **extra}
    (folder / "set.yaml").write_text(yaml.safe_dump(values, sort_keys=False))  # the variants in the order given
    return folder / "set.yaml"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"base": "b.yaml", "variants": {"a": []}, "outputs": "x"}, "unknown key(s) ['outputs']"),
        ({"base": "b.yaml", "output_dir": "x"}, "missing key 'variants'"),
        ({"base": "b.yaml", "output_dir": "x", "variants": {"a": "model.pooling=mean"}}, "variants.a: expected a list"),
        ({"base": "b.yaml", "output_dir": "x", "variants": {"a": []}, "seeds": 7}, "seeds must be a list"),
    ],
)
def test_a_bad_set_file_is_named(tmp_path, values, message):
    (tmp_path / "set.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ablate.load_set(tmp_path / "set.yaml")


def test_a_set_file_that_is_not_yaml_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "set.yaml").write_text("base: b.yaml\nvariants: {a: [\n")
    assert main(["ablate", str(tmp_path / "set.yaml")]) == 2
    error = capsys.readouterr().err.strip()
    assert "set.yaml: not valid YAML" in error and "Traceback" not in error and len(error.splitlines()) == 1


def test_a_typo_in_any_variant_stops_the_set_before_training(corpus, tmp_path, capsys):
    path = write_set(tmp_path, corpus, {"paper": [], "typo": ["model.regions=sphere50"]})
    assert main(["ablate", str(path)]) == 2
    error = capsys.readouterr().err
    assert "variant typo" in error and "model.regions" in error
    assert not (tmp_path / "runs").exists()


def test_a_missing_corpus_stops_the_set_before_training(corpus, tmp_path, capsys):
    path = write_set(tmp_path, corpus, {"paper": []})
    assert main(["ablate", str(path), f"data.corpus={tmp_path / 'nowhere'}"]) == 2
    error = capsys.readouterr().err
    assert "variant paper: data.corpus:" in error and "nowhere: no such folder" in error
    assert not (tmp_path / "runs").exists()


def test_the_repository_sets_load(tmp_path):
    for name in ("paper", "demo"):
        aset = ablate.load_set(Path(__file__).parents[1] / "recipes" / "ablations" / f"{name}.yaml")
        variants = ablate.plan(aset)
        assert {"paper", "no_aux", "sphere30", "aux_constant", "pool_mean"} <= {v.name for v in variants}
        configs = {v.name: v.config for v in variants}
        assert configs["sphere45"].model.regions == "sphere45"
        assert configs["pool_attentive"].model.pooling == "attentive"
        assert configs["paper"].model.regions == "octant" and configs["paper"].objective.aux_schedule == "linear"


def test_ablate_runs_each_variant_once_resumes_and_tabulates(corpus, tmp_path, monkeypatch, capsys):
    path = write_set(
        tmp_path,
        corpus,
        {"paper": [], "no_aux": ["objective.aux_schedule=none"], "broken": ["data.train_split=Nowhere"]},
    )
    assert main(["ablate", str(path)]) == 1  # the broken variant fails at run time; the others still run
    out = capsys.readouterr().out
    assert "variant broken (seed 7) failed" in out
    table = pd.read_csv(tmp_path / "runs" / "ablation.csv").set_index("variant")
    assert table["status"].to_dict() == {"paper": "done", "no_aux": "done", "broken": "failed"}
    assert "Error: " in table.loc["broken", "error"]  # the error, by type and message
    assert table.loc["no_aux", "regions"] == "none" and table.loc["no_aux", "region_source"] == "regression"
    assert table.loc["paper", "region_source"] == "classifier"
    assert 0 <= table.loc["paper", "octant_accuracy_from_values"] <= 1 and table.loc["paper", "epochs"] == 1
    markdown = (tmp_path / "runs" / "ablation.md").read_text()
    assert "| paper | (base) | octant | linear | style | 1 |" in markdown and "| failed |" in markdown
    assert "## Each variant against paper" in markdown and "| no_aux | paper | mean |" in markdown
    comparison = pd.read_csv(tmp_path / "runs" / "comparison.csv")
    assert set(comparison["system"]) == {"no_aux"} and comparison["p_value"].between(0, 1).all()

    # a second call trains nothing that is done; an interrupted run resumes from its last checkpoint
    RunDir(tmp_path / "runs" / "no_aux_seed7").ablation_state.unlink()
    for item in (tmp_path / "runs" / "no_aux_seed7" / "model").iterdir():
        item.unlink()
    (tmp_path / "runs" / "no_aux_seed7" / "model").rmdir()
    calls = []
    import emosphere.train

    real_train = emosphere.train.train
    monkeypatch.setattr(
        emosphere.train,
        "train",
        lambda config, resume: calls.append((config.output_dir, resume)) or real_train(config, resume=resume),
    )
    assert main(["ablate", str(path), "--variants", "paper,no_aux"]) == 0
    assert calls == [(str(tmp_path / "runs" / "no_aux_seed7"), True)]
    state = json.loads(RunDir(tmp_path / "runs" / "no_aux_seed7").ablation_state.read_text())
    assert state["resumed"] is True and state["overrides"] == ["objective.aux_schedule=none"]

    # more seeds for one variant: the table then shows both, as mean ± sd
    monkeypatch.setattr(emosphere.train, "train", real_train)
    assert main(["ablate", str(path), "--variants", "paper", "--seeds", "8"]) == 0
    table = pd.read_csv(tmp_path / "runs" / "ablation.csv")
    assert sorted(table.loc[table["variant"] == "paper", "seed"]) == [7, 8]
    assert set(table.loc[table["variant"] != "paper", "seed"]) == {7}
    paper = next(
        line for line in (tmp_path / "runs" / "ablation.md").read_text().splitlines() if line.startswith("| paper |")
    )
    assert "| 2 |" in paper and "±" in paper
