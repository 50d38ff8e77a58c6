"""The GPU check's summary (bench/gpu_check.py): its parts' figures against the targets, as JSON and markdown.

:func:`summarise` reads what the parts wrote (``<part>.json`` of the bench
scripts and the probe, ``cuda-tests.xml`` and ``cuda-compile-tests.xml`` of pytest) and returns the summary,
whose first keys are the headline figures: ``device``,
``train_valid_audio_s_per_s`` and ``train_peak_gib`` of the fastest training
variant (the paper recipe: batches of 16 x 4, random batches, 12 s crops of
2.75-11 s clips), ``train_variant``, ``predict_audio_s_per_s`` (files to
table, bf16), and ``fp32_batch_parity`` (the largest fp32 batched-vs-alone
difference on [0, 1] that bench/predict_speed.py and the cuda tests
measured). A figure that no part measured is None. :func:`markdown` renders it.
Standard library only.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any

TARGETS = {  # key: (what, comparison, target)
    "train_valid_audio_s_per_s": ("training, paper recipe: valid audio s/s", ">=", 1200),
    "train_peak_gib": ("training: peak memory, GiB", "<=", 20),
    "predict_audio_s_per_s": ("prediction, files to table, bf16: audio s/s", ">=", 2800),
    "fp32_batch_parity": ("fp32 prediction: batched vs alone, on [0, 1]", "<=", 1e-4),
}


def read_json(path: Path) -> Any:
    """The JSON at ``path``, or None where the part wrote none (it failed, timed out or did not run)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def junit(paths: list[Path]) -> dict[str, Any]:
    """Outcome, seconds, first line of the message and recorded properties of every test in pytest's XML
    files (those that exist)."""
    cases = []
    for path in paths:
        cases += test_cases(path)
    return {"counts": dict(Counter(case["outcome"] for case in cases)), "cases": cases}


def test_cases(path: Path) -> list[dict[str, Any]]:
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return []
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                outcome, message = name, (node.get("message") or "").strip().split("\n")[0][:300]
        cases.append(
            {
                "test": f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}",
                "outcome": outcome,
                "seconds": round(float(case.get("time") or 0), 1),
                "message": message,
                "properties": {p.get("name"): p.get("value") for p in case.iter("property")},
            }
        )
    return cases


def training(state: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """Every variant that bench/train_speed.py measured in the train parts, with its part and precision."""
    rows = []
    for part in state["parts"]:
        figures = read_json(work / f"{part}.json") if part.startswith("train") else None
        for result in (figures or {}).get("results", []):
            rows.append({"part": part, "precision": figures["args"]["precision"], **result})
    return rows


def parity(speed: dict[str, Any] | None, tests: dict[str, Any]) -> float | None:
    """The largest fp32 batched-vs-alone difference measured (bench/predict_speed.py b vs a, the tests)."""
    values = [
        float(case["properties"]["fp32_batch_parity"])
        for case in tests["cases"]
        if "fp32_batch_parity" in case["properties"]
    ]
    if speed:
        values.append(speed["max_abs_difference"]["b_vs_a"])
    return max(values) if values else None


def summarise(state: dict[str, Any], work: Path) -> dict[str, Any]:
    """The summary of the check so far: the headline figures, the targets, then everything measured."""
    probe = read_json(work / "prepare.json") or {}
    tests = junit([work / "cuda-tests.xml", work / "cuda-compile-tests.xml"])
    train = training(state, work)
    fastest = max(train, key=lambda row: row["valid_audio_s_per_s"], default=None)
    scale, speed = read_json(work / "predict-scale.json"), read_json(work / "predict-speed.json")
    first = next(iter(scale["settings"].values())) if scale else None
    figures = {
        "device": probe.get("device"),
        "train_valid_audio_s_per_s": fastest and fastest["valid_audio_s_per_s"],
        "train_peak_gib": fastest and fastest["peak_memory_gib"],
        "train_variant": fastest and f"{fastest['variant']} {fastest['precision']}",
        "predict_audio_s_per_s": first and first["audio_seconds_per_second"],
        "fp32_batch_parity": parity(speed, tests),
    }
    targets = {}
    for key, (what, comparison, target) in TARGETS.items():
        value = figures[key]
        met = None if value is None else value >= target if comparison == ">=" else value <= target
        targets[key] = {"what": what, "target": f"{comparison} {target:g}", "measured": value, "met": met}
    return {
        **figures,
        "targets": targets,
        **state,
        "probe": probe,
        "tests": tests,
        "training": train,
        "prediction": {"files_to_table": scale, "paths": speed},
    }


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:g}"
    return "" if value is None else str(value)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def markdown(summary: dict[str, Any]) -> str:
    """The summary to read: targets, parts, tests, training variants and prediction paths."""
    probe = summary["probe"]
    met = {True: "yes", False: "**no**", None: "not measured"}
    targets = [[t["what"], t["target"], t["measured"], met[t["met"]]] for t in summary["targets"].values()]
    lines = [
        f"# GPU check: {summary['device'] or 'device unknown'}",
        "",
        f"{summary['started']}{'; **dry run** (CPU, tiny models)' if summary['dry_run'] else ''}; "
        f"{summary.get('seconds', 0):.0f} s of a {summary['budget_s']:.0f} s budget; Python {probe.get('python')}, "
        f"{', '.join(f'{k} {v}' for k, v in probe.get('versions', {}).items())}; CUDA {probe.get('cuda')}"
        + (f"; **missing**: {', '.join(probe['missing'])}" if probe.get("missing") else ""),
        "",
        "## Targets",
        "",
        *table(["what", "target", "measured", "met"], targets),
        "",
        f"Fastest training variant: {summary['train_variant'] or 'none measured'}.",
        "",
        "## Parts",
        "",
        *table(
            ["part", "status", "seconds", "limit"],
            [[name, p["status"], p.get("seconds"), p.get("limit")] for name, p in summary["parts"].items()],
        ),
        "",
        *tests_section(summary["tests"]),
        *training_section(summary["training"]),
        *prediction_section(summary["prediction"]),
    ]
    return "\n".join(lines) + "\n"


def tests_section(tests: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {outcome}" for outcome, n in tests["counts"].items()) or "no results"
    rows = [
        [
            c["test"],
            c["outcome"],
            c["seconds"],
            c["message"] or ", ".join(f"{k} {v}" for k, v in c["properties"].items()),
        ]
        for c in tests["cases"]
    ]
    return ["## CUDA tests", "", f"{counts}.", "", *table(["test", "outcome", "s", "measured, or why"], rows), ""]


def training_section(rows: list[dict[str, Any]]) -> list[str]:
    header = ["part", "variant", "precision", "valid audio s/s", "peak GiB", "padding", "TFLOP/s", "warm-up s (graphs)"]
    body = [
        [
            r["part"],
            r["variant"],
            r["precision"],
            r["valid_audio_s_per_s"],
            r["peak_memory_gib"],
            f"{r['padding_share']:.0%}",
            r["tflops"],
            f"{r['warmup_s']} ({r['graphs_compiled']}; {r['graphs_compiled_while_timed']} while timed)",
        ]
        for r in rows
    ]
    return ["## Training (bench/train_speed.py)", "", *table(header, body), ""]


def prediction_section(prediction: dict[str, Any]) -> list[str]:
    lines = ["## Prediction", ""]
    scale, speed = prediction["files_to_table"], prediction["paths"]
    if scale:
        lines.append(f"Files to table (bench/predict_scale.py): {scale['model']}, {scale['utterances']} files.")
        rows = [
            [name, r["predict_seconds"], r["audio_seconds_per_second"], r["utterances_per_second"]]
            for name, r in scale["settings"].items()
        ]
        lines += ["", *table(["setting", "seconds", "audio s/s", "utt/s"], rows), ""]
    if speed:
        lines.append(f"Paths (bench/predict_speed.py): {speed['model']}, {speed['utterances']} utterances.")
        rows = [
            [f"({key}) {p['what']}", p["seconds"], round(speed["audio_seconds"] / p["seconds"], 1)]
            for key, p in speed["paths"].items()
        ]
        differences = ", ".join(f"{k} {v:.1e}" for k, v in speed["max_abs_difference"].items())
        lines += [
            "",
            *table(["path", "seconds", "audio s/s"], rows),
            "",
            f"Largest differences on [0, 1]: {differences}.",
            "",
        ]
    return lines
