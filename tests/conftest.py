"""Shared fixtures: tiny (and WavLM-large-shaped) random WavLM configs, a generated MSP-Podcast-layout corpus,
the ``cuda`` marker's skip, and ``emosphere serve`` in a subprocess."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from emosphere.config import EncoderConfig, ModelConfig

TINY_WAVLM = {
    "model_type": "wavlm",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "feat_extract_norm": "layer",
    "layerdrop": 0.0,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "mask_time_prob": 0.0,
}


LARGE_WAVLM = {
    **TINY_WAVLM,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "conv_dim": [512] * 7,
    "conv_bias": True,
    "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}
"""WavLM-large's architecture (no layer drop, no time masking): the shapes and kernels of the paper's encoder."""

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
"""A test's devices: the CPU always; CUDA where present (bench/gpu_check.py runs the cuda tests on a GPU)."""


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the tests marked ``cuda``, with the reason, where no CUDA device is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def tiny_model_config(**changes) -> ModelConfig:
    return ModelConfig(encoder=EncoderConfig(name="tiny", pretrained=False, config=dict(TINY_WAVLM)), **changes)


def tiny_model(seed: int = 0, **changes):
    """A tiny random model in eval mode whose predictions lie inside [0, 1], away from the centre."""
    return random_model(tiny_model_config(**changes), seed)


def random_model(config: ModelConfig, seed: int = 0):
    """A random model of ``config`` in eval mode whose predictions lie inside [0, 1], away from the centre."""
    import torch

    from emosphere.audio import AudioStats
    from emosphere.model import EmoSphereSER

    torch.manual_seed(seed)
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).eval()
    with torch.no_grad():  # move the random predictions inside [0, 1] (no clipping) and away from the centre
        noise = 0.1 * torch.randn(1, 16000)
        model.regression_head.net[-1].bias += (
            torch.tensor([0.65, 0.4, 0.6]) - model(noise, torch.tensor([16000])).avd[0]
        )
    return model


def tone(rate: int, seconds: float, tones=(220, 470, 1300)) -> np.ndarray:
    """Amplitude-modulated tones (all below 4 kHz, so they survive 8 kHz sampling)."""
    t = np.arange(int(seconds * rate)) / rate
    return ((0.3 * np.sin(2 * np.pi * 3 * t) + 0.5) * sum(0.1 * np.sin(2 * np.pi * f * t) for f in tones)).astype(
        np.float32
    )


def train_args(corpus, output, *extra):
    """``emosphere train`` arguments for a tiny CPU run of 2 epochs on ``corpus``."""
    encoder = yaml.safe_dump(TINY_WAVLM, default_flow_style=True).strip()
    return [
        "train",
        f"data.corpus={corpus}",
        f"output_dir={output}",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.progress=false",
        "trainer.log_every_n_steps=1",
        "model.encoder.pretrained=false",
        f"model.encoder.config={encoder}",
        "model.head_hidden=32",
        "model.head_dropout=0.0",
        "data.num_workers=0",
        "data.batch_size=8",
        "optim.lr=3e-3",
        "optim.accumulate_grad_batches=1",
        *extra,
    ]


def write_corpus(root: Path, splits: dict[str, int], seed: int = 0) -> Path:
    """An MSP-Podcast-layout corpus of tones whose loudness follows arousal and pitch follows valence."""
    rng = np.random.default_rng(seed)
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    rows, speaker = [], 0
    for split_name, count in splits.items():
        for i in range(count):
            speaker += i % 4 == 0
            avd = np.round(np.clip(rng.normal(4, 1.3, 3), 1, 7), 1)
            rate = 16000 if i % 5 else 22050
            seconds = rng.uniform(0.3, 1.2)
            t = np.arange(int(seconds * rate)) / rate
            wave = 0.05 * avd[0] * np.sin(2 * np.pi * (100 + 40 * avd[1]) * t)
            wave = wave + 0.01 * rng.standard_normal(len(t))
            if i % 7 == 3:  # some stereo files
                wave = np.stack([wave, 0.5 * wave], axis=1)
            name = f"MSP-PODCAST_{split_name}_{i:04d}.wav"
            sf.write(root / "Audios" / name, wave.astype(np.float32), rate)
            rows.append(
                {
                    "FileName": name,
                    "EmoClass": "ASHUFDCNOX"[i % 10],
                    "EmoAct": avd[0],
                    "EmoVal": avd[1],
                    "EmoDom": avd[2],
                    "SpkrID": speaker,
                    "Gender": "Female" if i % 2 else "Male",
                    "Split_Set": split_name,
                }
            )
    pd.DataFrame(rows).to_csv(root / "Labels" / "labels_consensus.csv", index=False)
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), {"Train": 40, "Development": 12, "Test1": 12})


@pytest.fixture(scope="session")
def trained_run(corpus, tmp_path_factory) -> Path:
    """A finished tiny training run (2 epochs, not evaluated); copy it before changing it."""
    from emosphere.cli import main

    output = tmp_path_factory.mktemp("trained_run")
    assert main(train_args(corpus, output, "--no-eval")) == 0
    return output


@contextlib.contextmanager
def served(model_dir: Path, *options: str) -> Iterator[tuple[str, str]]:
    """``emosphere serve`` for ``model_dir`` on a free loopback port, in a subprocess of this checkout's
    sources; yields its address and its first line once it answers /health, then stops it with SIGINT
    (it must exit 0)."""
    import httpx

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "emosphere.cli", "serve", "--model", str(model_dir), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        address = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert address, f"no address in {line!r}: {process.stderr.read() if process.poll() is not None else ''}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{address.group()}/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "the service did not answer"
                time.sleep(0.1)
        yield address.group(), line
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "I told you already, we are not going there tonight!",
    "Could you please pass me the salt?",
)
PAUSES = (0.8, 1.5, 3.0, 1.0)
"""Seconds of near-silence before each sentence and after the last."""


def speak(text: str) -> np.ndarray:
    """``text`` spoken by espeak-ng at 16 kHz, its leading and trailing silence cut off."""
    import shutil
    import subprocess
    import tempfile

    import soxr

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; make setup installs it)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        samples, rate = sf.read(path, dtype="float32")
    samples = soxr.resample(samples, rate, 16000).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="session")
def talk(tmp_path_factory) -> tuple[Path, list[tuple[float, float]]]:
    """A 16 kHz WAV of three spoken sentences between pauses (:data:`PAUSES`) over faint noise, and
    each sentence's (start, end) in seconds."""
    rng = np.random.default_rng(0)
    parts, spans, at = [], [], 0
    for i, pause in enumerate(PAUSES):
        parts.append(np.zeros(int(pause * 16000), np.float32))
        at += len(parts[-1])
        if i < len(SENTENCES):
            parts.append(speak(SENTENCES[i]))
            spans.append((at / 16000, (at + len(parts[-1])) / 16000))
            at += len(parts[-1])
    audio = np.concatenate(parts)
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    sf.write(path, audio + 0.003 * rng.standard_normal(len(audio)).astype(np.float32), 16000)
    return path, spans
