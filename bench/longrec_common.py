"""What bench/long_recording.py and bench/stream_latency.py share: a random base-size model (as a model
directory, an fp32 ONNX file and an int8 ONNX file, made once into a cache folder) and espeak-ng
speech with pauses, music and silence, tiled to any length.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I told you already, we are not going there tonight!",
    "Could you please pass me the salt and the pepper?",
    "That was the best concert I have heard in years.",
    "Nobody knows where the old keys have gone.",
    "Well, maybe tomorrow will be a better day for all of us.",
    "Honestly, I cannot believe you did that without asking me first.",
    "Let us meet at the station at half past nine.",
]
VOICES = ["en", "en+f3", "en-us", "en+m3", "en+f2"]


def models(folder: Path, hidden: int = 768, layers: int = 12) -> dict[str, Path]:
    """A random WavLM of base size with style pooling and the octant head (speed does not depend on
    the weights): ``{"torch": model dir, "onnx": fp32 file, "int8": int8 file}``, made once."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"torch": folder / "model", "onnx": folder / "model.onnx", "int8": folder / "model.int8.onnx"}
    if all(p.exists() for p in paths.values()):
        return paths
    import torch

    from emosphere.audio import AudioStats
    from emosphere.config import EncoderConfig, ModelConfig
    from emosphere.export import export_onnx, quantize_onnx
    from emosphere.model import EmoSphereSER

    encoder = {"model_type": "wavlm", "hidden_size": hidden, "num_hidden_layers": layers,
               "num_attention_heads": hidden // 64, "intermediate_size": 4 * hidden, "feat_extract_norm": "layer",
               "layerdrop": 0.0}  # fmt: skip
    config = ModelConfig(encoder=EncoderConfig(name="wavlm-random", pretrained=False, config=encoder))
    torch.manual_seed(0)
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).eval()
    model.save_pretrained(paths["torch"])
    export_onnx(model, paths["onnx"])
    quantize_onnx(paths["onnx"], paths["int8"])
    return paths


def speak(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        samples, rate = sf.read(path, dtype="float32")
    return soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)


def material(seed: int = 0) -> np.ndarray:
    """About two minutes of a conversation: the sentences in turn with pauses of 0.6-2.5 s, twice five
    sentences with 0.25 s pauses (one region of about 15 s), a stretch of music (harmonic chords)
    and one of silence, 1 s of silence at either end; faint noise throughout."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(SAMPLE_RATE, np.float32)]  # silence at both ends: tiles never join two regions into one
    for turn in range(24):
        parts.append(speak(SENTENCES[turn % len(SENTENCES)], VOICES[turn % len(VOICES)]))
        long_turn = turn % 12 in (3, 4, 5, 6)  # one speaker goes on: a region longer than a window
        parts.append(np.zeros(int((0.25 if long_turn else rng.uniform(0.6, 2.5)) * SAMPLE_RATE), np.float32))
        if turn in (7, 15):
            t = np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE
            chords = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330, 440)) if turn == 7 else 0 * t
            parts.append((0.04 * chords).astype(np.float32))
    parts.append(np.zeros(SAMPLE_RATE, np.float32))
    audio = np.concatenate(parts)
    return audio + 0.003 * rng.standard_normal(len(audio)).astype(np.float32)


def recording(path: Path, seconds: float) -> Path:
    """A 16 kHz WAV of ``seconds`` of :func:`material`, tiled; written once."""
    if path.exists() and abs(sf.info(path).duration - seconds) < 1:
        return path
    block = material()
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as out:
        left = int(seconds * SAMPLE_RATE)
        while left > 0:
            out.write(block[:left])
            left -= min(left, len(block))
    return path
