"""The bench scripts run: each in its tiny mode, and the GPU check as a dry run on the CPU.

Their figures mean nothing here (tiny models, a shared CPU); what is checked is that every script
still runs against the library and writes the figures its readers (docs/benchmarks.md, the GPU
check's summary) look for, so that a change of signature cannot break one unseen. The dry run of
the GPU check runs bench/train_speed.py, predict_speed.py and predict_scale.py in their tiny modes.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"
HEADLINE = ["device", "train_valid_audio_s_per_s", "train_peak_gib", "predict_audio_s_per_s", "fp32_batch_parity"]


@pytest.fixture
def bench(monkeypatch):
    """Import a bench script as a module."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


@pytest.mark.parametrize(
    "name, key",
    [
        ("serve_load", "results"),
        ("serve_fairness", "results"),
        ("data_scale", "results"),
        ("predict_memory", None),
        ("int8_speed", "steps"),
        ("cpu_encoders", "rows"),
    ],
)
def test_a_bench_script_runs_in_its_tiny_mode(bench, tmp_path, name, key):
    figures = bench(name).main(["--tiny", "--json", str(tmp_path / "figures.json")])
    written = json.loads((tmp_path / "figures.json").read_text())
    assert written == json.loads(json.dumps(figures)) and (written[key] if key else written)


def test_int8_accuracy_scores_a_trained_model(bench, trained_run, corpus, tmp_path):
    args = ["--model", str(trained_run / "model"), "--corpus", str(corpus), "--split", "Test1"]
    figures = bench("int8_accuracy").main([*args, "--json", str(tmp_path / "figures.json")])
    assert set(figures["ccc"]) == {"pytorch fp32", "onnxruntime fp32", "onnxruntime int8"}
    assert figures["max_abs_difference_1_7"]["onnxruntime fp32 vs pytorch fp32"] < 1e-3


def test_the_gpu_check_dry_run_writes_its_summary(tmp_path):
    """Every part of the check on the CPU (tiny models; the cuda tests skip without a GPU): the summary
    has the headline figures the GPU run is committed with, each part passed, and the markdown and log."""
    (tmp_path / "wheels").mkdir()
    command = [sys.executable, str(BENCH / "gpu_check.py"), "--dry-run", "--output", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "--wheels", str(tmp_path / "wheels")], check=False, capture_output=True, text=True, env=os.environ
    )
    assert done.returncode == 0, done.stdout[-3000:]
    summary = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert list(summary)[: len(HEADLINE) + 1] == [*HEADLINE[:3], "train_variant", *HEADLINE[3:]]
    assert all(summary[key] is not None for key in HEADLINE) and summary["fp32_batch_parity"] < 1e-4
    parts = ["prepare", "cuda-tests", "train-compile", "predict-scale", "predict-speed"]
    assert {name: part["status"] for name, part in summary["parts"].items()} == dict.fromkeys(parts, "passed")
    assert sum(summary["tests"]["counts"].values()) >= 18  # the cuda tests were collected (and skipped, or ran)
    assert [row["variant"] for row in summary["training"]] == ["fused+sub+compile"]
    page = (tmp_path / "out" / "gpu-check.md").read_text()
    assert all(f"## {section}" in page for section in ("Targets", "Parts", "CUDA tests", "Training", "Prediction"))
    assert "predict-speed: passed" in (tmp_path / "out" / "gpu-check.log").read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu-check.json", "gpu-check.log", "gpu-check.md"]


def test_the_gpu_summary_takes_the_fastest_variant_and_the_largest_parity(bench, tmp_path):
    summary = bench("gpu_summary")

    def train(precision, *rows):
        results = [{"variant": v, "valid_audio_s_per_s": speed, "peak_memory_gib": gib} for v, speed, gib in rows]
        return {"args": {"precision": precision}, "results": results}

    (tmp_path / "train-fp16.json").write_text(
        json.dumps(train("fp16", ("eager", 400.0, 28.0), ("fused+sub", 1300.0, 19.0)))
    )
    (tmp_path / "train-bf16.json").write_text(json.dumps(train("bf16", ("fused+sub", 1250.0, 18.0))))
    (tmp_path / "predict-speed.json").write_text(json.dumps({"max_abs_difference": {"b_vs_a": 2e-5}}))
    (tmp_path / "cuda-tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.test_predict" name="test_parity[cuda]" time="1.5">'
        '<properties><property name="fp32_batch_parity" value="3e-05"/></properties></testcase>'
        '<testcase classname="tests.test_serve" name="test_serve" time="2"><failure message="boom&#10;more"/>'
        "</testcase></testsuite></testsuites>"
    )
    parts = {name: {"status": "passed"} for name in ("prepare", "cuda-tests", "train-fp16", "train-bf16")}
    result = summary.summarise({"parts": parts}, tmp_path)
    assert (result["train_valid_audio_s_per_s"], result["train_peak_gib"]) == (1300.0, 19.0)
    assert result["train_variant"] == "fused+sub fp16" and result["fp32_batch_parity"] == 3e-5
    assert result["device"] is None and result["predict_audio_s_per_s"] is None  # not measured: None, not 0
    assert [t["met"] for t in result["targets"].values()] == [True, True, None, True]
    assert result["tests"]["counts"] == {"passed": 1, "failed": 1}
    assert result["tests"]["cases"][1]["message"] == "boom"
