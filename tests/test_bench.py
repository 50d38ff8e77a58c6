"""The bench scripts run, each in its tiny mode.

Their figures mean nothing here (tiny models, a shared CPU); what is checked is that every script
still runs against the library and writes the figures its readers (docs/benchmarks.md) look for,
so that a change of signature cannot break one unseen.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    """Import a bench script as a module."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


@pytest.mark.parametrize("name, key", [("serve_load", "results"), ("data_scale", "results"), ("predict_memory", None)])
def test_a_bench_script_runs_in_its_tiny_mode(bench, tmp_path, name, key):
    figures = bench(name).main(["--tiny", "--json", str(tmp_path / "figures.json")])
    written = json.loads((tmp_path / "figures.json").read_text())
    assert written == json.loads(json.dumps(figures)) and (written[key] if key else written)


def test_int8_accuracy_scores_a_trained_model(bench, trained_run, corpus, tmp_path):
    args = ["--model", str(trained_run / "model"), "--corpus", str(corpus), "--split", "Test1"]
    figures = bench("int8_accuracy").main([*args, "--json", str(tmp_path / "figures.json")])
    assert set(figures["ccc"]) == {"pytorch fp32", "onnxruntime fp32", "onnxruntime int8"}
    assert figures["max_abs_difference_1_7"]["onnxruntime fp32 vs pytorch fp32"] < 1e-3
