"""Training speed: transformers' eager WavLM path vs each speed-up, side by side.

Training steps of the paper's model (WavLM, style pooling, octant head, the
per-batch CCC plus region loss of ``EmoSphereTask.training_step``, AdamW,
batch 16 x 4 accumulation, random batches) on generated audio with
MSP-Podcast-like lengths (2.75-11 s, uniform), for each variant:

  main         eager attention, the padded batch whole, the feature extractor's input
               requiring grad (as emosphere trained before the frozen-extractor fix)
  eager        transformers' eager attention, the padded batch whole
  fused        fused attention (emosphere.attention), the padded batch whole
  fused+sub    fused attention, up to 4 length-sorted sub-batches per batch
  +micro4      ... and trainer.micro_batches_per_step 4 (the 4 accumulation batches encoded
               together, each with its own loss)
  +compile     ... and trainer.compile (regional torch.compile, bucketed lengths)

Each variant runs in its own process (a fresh model with the same seed, so the
same weights and the same batches; peak memory is its own). Warm-up steps run
until the compiled variants stop compiling (two whole accumulation cycles
without a new graph), then ``--steps`` timed batches. Two DataLoader workers
(on CUDA) collate the batches, as in training. Reported per variant:
valid audio seconds per second (what the corpus holds), processed audio
seconds per second (what the encoder computed, padding included), the share
of padding, peak memory (CUDA: max allocated; CPU: the process's max RSS) and
the estimated fraction of the device's peak matrix throughput, from an
analytic count of the model's training FLOPs per valid audio second (about
105 GFLOP for WavLM-large). See docs/benchmarks.md.

On CUDA (default when present): WavLM-large architecture, random init, fp16
(or ``--precision bf16``) mixed precision. On CPU: a small WavLM, fp32, and
the compiled variants only with ``--compile`` (compilation takes minutes).

    HF_HUB_OFFLINE=1 python bench/train_speed.py                      # CUDA if present
    HF_HUB_OFFLINE=1 python bench/train_speed.py --device cpu --steps 4 --json figures.json
    HF_HUB_OFFLINE=1 python bench/train_speed.py --device cpu --tiny --compile --compile-backend eager  # does it run?
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from typing import Any

import numpy as np
from benchlib import (
    SAMPLE_RATE,
    ChildError,
    answer,
    child_json,
    defaults,
    encoder_config,
    finish,
    load_average,
    machine,
    parser,
)

VARIANTS = {
    "main": {"attention": "eager", "sub_batches": 1, "compile": False, "micro": 1, "input_grad": True},
    "eager": {"attention": "eager", "sub_batches": 1, "compile": False, "micro": 1},
    "fused": {"attention": "fused", "sub_batches": 1, "compile": False, "micro": 1},
    "fused+sub": {"attention": "fused", "sub_batches": 4, "compile": False, "micro": 1},
    "fused+sub+micro4": {"attention": "fused", "sub_batches": 4, "compile": False, "micro": 4},
    "fused+sub+compile": {"attention": "fused", "sub_batches": 4, "compile": True, "micro": 1},
    "fused+sub+compile+micro4": {"attention": "fused", "sub_batches": 4, "compile": True, "micro": 4},
}
# Dense fp16/bf16 tensor-core peaks (TFLOP/s) by device name; --peak-tflops overrides.
PEAKS = {"H200": 989, "H100 PCIe": 756, "H100": 989, "A100": 312, "L40S": 362, "A10G": 125, "L4": 121}
TRAINING = {  # WavLM-large's hub config's training settings
    "layerdrop": 0.1,
    "mask_time_prob": 0.075,
    "mask_time_length": 10,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.1,
}


def training_encoder(size: str) -> dict[str, Any]:
    """WavLM-large's architecture (``large``), a small WavLM (hidden 256, 4 layers, conv 128 channels)
    or the tiny one, each with WavLM-large's training settings (:data:`TRAINING`)."""
    if size == "large":
        return encoder_config(1024, 24, conv_bias=True, do_stable_layer_norm=True, **TRAINING)
    return encoder_config(
        256, 4, tiny=size == "tiny", **({"conv_dim": [128] * 7} if size == "small" else {}), **TRAINING
    )


def train_flops_per_second(config: dict[str, Any], mean_frames: float) -> float:
    """Matrix FLOPs of one training step per second of audio: the frozen convolutional feature
    extractor forward only, everything after it forward and backward (3x)."""
    conv_dim = config.get("conv_dim", [512] * 7)
    kernels, strides = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]
    rate, channels, extractor = float(SAMPLE_RATE), 1, 0.0
    for dim, kernel, stride in zip(conv_dim, kernels, strides):
        rate /= stride
        extractor += 2 * rate * channels * dim * kernel
        channels = dim
    d, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_frame = 2 * channels * d + 2 * d * d * 128 / 16  # projection, positional convolution (128 taps, 16 groups)
    per_frame += layers * (2 * (4 * d * d + 2 * d * inner) + 4 * mean_frames * d)  # linears, scores and values
    per_frame += 2 * d * d * 4  # style pooling and heads, roughly
    return extractor + 3 * per_frame * rate


def device_peak(device: Any, override: float | None) -> float | None:
    import torch

    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAKS.items() if key in name), None)


def make_pool(count: int, seed: int, seconds: tuple[float, float] = (2.75, 11.0)) -> list[dict]:
    """A corpus of noise utterances of 2.75-11 s (speed does not depend on the content), with labels."""
    rng = np.random.default_rng(seed)
    return [
        {
            "waveform": 0.1 * rng.standard_normal(int(rng.uniform(*seconds) * SAMPLE_RATE), dtype=np.float32),
            "index": i,
            "avd": rng.uniform(size=3).astype(np.float32),
            "region": int(rng.integers(8)),
        }
        for i in range(count)
    ]


class Steps:
    """The loader's output for each step: ``micro`` random batches of ``size`` from ``pool``, collated
    as training collates them (a map-style dataset, so that DataLoader workers prepare them)."""

    def __init__(self, pool: list[dict], count: int, size: int, micro: int, seed: int) -> None:
        rng = np.random.default_rng(seed + 1)
        self.pool, self.micro = pool, micro
        self.batches = [rng.choice(len(pool), size, replace=False) for _ in range(count * micro)]

    def __len__(self) -> int:
        return len(self.batches) // self.micro

    def __getitem__(self, index: int) -> Any:
        from emosphere import data

        groups = [
            [self.pool[i] for i in batch] for batch in self.batches[index * self.micro : (index + 1) * self.micro]
        ]
        return data.collate(groups[0]) if self.micro == 1 else data.collate_micro_batches(groups)


def encoder_size(args: argparse.Namespace) -> str:
    """large on CUDA, small on the CPU (and with --small), tiny with --tiny."""
    if args.tiny:
        return "tiny"
    return "large" if args.device.startswith("cuda") and not args.small else "small"


def build_task(args: argparse.Namespace, encoder: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The variant's model, training task and optimiser on the device (the same seed for every variant)."""
    import pandas as pd
    import torch

    from emosphere.audio import AudioStats
    from emosphere.config import EncoderConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
    from emosphere.model import EmoSphereSER
    from emosphere.train import EmoSphereTask

    variant = VARIANTS[args.run_variant]
    config = ModelConfig(
        encoder=EncoderConfig(
            name="wavlm-random",
            pretrained=False,
            config=encoder,
            attention=variant["attention"],
            sub_batches=variant["sub_batches"],
        ),
        head_hidden=1024 if encoder["hidden_size"] == 1024 else 0,
    )
    torch.manual_seed(0)
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).to(args.device)
    if variant.get("input_grad"):
        model.encoder.model.feature_extractor._requires_grad = True  # the behaviour before the fix
    run = RunConfig(
        optim=OptimConfig(accumulate_grad_batches=args.accumulate),
        trainer=TrainerConfig(micro_batches_per_step=variant["micro"], compile=variant["compile"]),
    )
    if variant["compile"]:
        model.encoder.compile_training(int(12.0 * SAMPLE_RATE), backend=args.compile_backend)
    task = EmoSphereTask(model, run, np.ones(8), dev_rows=pd.DataFrame({"path": []})).to(args.device).train()
    return model, task, task.configure_optimizers()


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this process; returns its figures. (Long: the warm-up, the timed steps and the
    figures share the step's state; apart, they would pass it around.)"""
    import torch
    from torch._dynamo.utils import counters

    from emosphere import data

    micro, accumulate = VARIANTS[args.run_variant]["micro"], args.accumulate
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    encoder = training_encoder(encoder_size(args))
    model, task, optimizer = build_task(args, encoder)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)

    processed = [0]
    model.encoder.model.register_forward_pre_hook(
        lambda _, inputs: processed.__setitem__(0, processed[0] + inputs[0].numel())
    )
    if args.tiny:  # short utterances: few lengths for a compiled variant to compile
        pool = make_pool(16, args.seed, (1.0, 2.0))
    else:
        pool = make_pool(512 if device.type == "cuda" else 128, args.seed)
    timed, warmup_max = -(-args.steps // micro), -(-args.warmup_max // micro)  # in loader steps of `micro` batches
    steps = Steps(pool, warmup_max + timed, args.batch_size, micro, args.seed)
    workers = 2 if device.type == "cuda" else 0
    loader = iter(torch.utils.data.DataLoader(steps, batch_size=None, shuffle=False, num_workers=workers))
    cycle = accumulate // micro

    def step(index: int, batch: data.Batch) -> None:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log without a trainer
            loss = task.training_step(batch, index)
        scaler.scale(loss / cycle).backward()  # what Lightning does with accumulate_grad_batches
        if (index + 1) % cycle == 0:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, index, quiet, graphs = time.perf_counter(), 0, 0, -1
    deadline = start + (args.warmup_seconds or float("inf"))
    while index < warmup_max and (index < 2 * cycle or quiet < 2 * cycle) and time.perf_counter() < deadline:
        step(index, next(loader))
        index += 1
        now = counters["stats"]["unique_graphs"]
        quiet, graphs = (quiet + 1 if now == graphs else 0), now
    sync()
    warmup = time.perf_counter() - start
    processed[0], valid, utterances = 0, 0.0, 0
    start = time.perf_counter()
    for i in range(timed):
        batch = next(loader)
        valid, utterances = valid + int(batch.lengths.sum()) / SAMPLE_RATE, utterances + len(batch.lengths)
        step(index + i, batch)
    sync()
    seconds = time.perf_counter() - start
    done = processed[0] / SAMPLE_RATE
    mean_frames = 50 * valid / utterances
    peak = device_peak(device, args.peak_tflops)
    flops = train_flops_per_second(encoder, mean_frames) * valid / seconds
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "variant": args.run_variant,
        "valid_audio_s_per_s": round(valid / seconds, 1),
        "processed_audio_s_per_s": round(done / seconds, 1),
        "padding_share": round(1 - valid / done, 3),
        "utterances_per_s": round(utterances / seconds, 2),
        "peak_memory_gib": round(memory, 2),
        "tflops": round(flops / 1e12, 3),
        "fraction_of_peak": round(flops / peak, 4) if peak else None,
        "warmup_s": round(warmup, 1),
        "warmup_steps": index,
        "timed_steps": timed,
        "graphs_compiled": counters["stats"]["unique_graphs"],
        "graphs_compiled_while_timed": counters["stats"]["unique_graphs"] - max(graphs, 0),
    }


def report(figures: dict[str, Any]) -> None:
    args, results = figures["args"], figures["results"]
    print(
        f"\n{figures['device']}, torch {figures['torch']}; {figures['model']}, random init; "
        f"batch {args['batch_size']} x {args['accumulate']}, {args['precision']}; {args['steps']} timed batches, "
        f"best of {args['rounds']} rounds; load average {figures['load_average_at_end']}\n"
    )
    print(
        "| variant | valid audio s/s | processed audio s/s | padding | utt/s | peak memory GiB | TFLOP/s "
        "| fraction of peak | vs first | warm-up s (steps, graphs) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = results[0]["valid_audio_s_per_s"] if results else None
    for r in results:
        fraction = f"{r['fraction_of_peak']:.1%}" if r["fraction_of_peak"] is not None else "n/a"
        print(
            f"| {r['variant']} | {r['valid_audio_s_per_s']} | {r['processed_audio_s_per_s']} | "
            f"{r['padding_share']:.0%} | {r['utterances_per_s']} | {r['peak_memory_gib']} | {r['tflops']} | "
            f"{fraction} | {r['valid_audio_s_per_s'] / base:.2f}x | "
            f"{r['warmup_s']} ({r['warmup_steps']}, {r['graphs_compiled']}) |"
        )
    for name, error in figures["failed"].items():
        print(f"{name} failed: {error.splitlines()[-1] if error else ''}")


def options() -> argparse.ArgumentParser:
    result = parser(__doc__)
    result.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    result.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help="the variants to run, in this order (default: all; on the CPU, the compiled ones only with --compile)",
    )
    result.add_argument("--compile", action="store_true", help="CPU: include the compiled variants")
    result.add_argument(
        "--compile-backend", default="inductor", help="torch.compile's backend (default inductor; eager: quick)"
    )
    result.add_argument(
        "--precision",
        choices=["fp16", "bf16", "fp32"],
        default=None,
        help="autocast dtype (default: fp16 on CUDA, as the paper; fp32 on CPU)",
    )
    result.add_argument("--batch-size", type=int, help="utterances per batch (default 16; --tiny 4)")
    result.add_argument("--accumulate", type=int, help="batches per optimiser step (default 4; --tiny 2)")
    result.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed batches of --batch-size (default: 48 on CUDA, 8 on CPU, 2 with --tiny); +micro4 takes 4 a step",
    )
    result.add_argument("--warmup-max", type=int, default=None, help="most warm-up batches (default: 4x --steps)")
    result.add_argument(
        "--warmup-seconds",
        type=float,
        default=None,
        help="stop warming up after this many seconds (a compiled variant may then compile while timed: "
        "graphs_compiled_while_timed says so)",
    )
    result.add_argument("--small", action="store_true", help="the small encoder on CUDA too")
    result.add_argument("--threads", type=int, default=0)
    result.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if not in the table")
    result.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the variants in turn this many times; each one's fastest round counts",
    )
    result.add_argument("--seed", type=int, default=0)
    result.add_argument("--run-variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = options().parse_args(argv)

    import torch

    cuda = torch.cuda.is_available() and args.device != "cpu"
    args.device = args.device or ("cuda" if cuda else "cpu")
    args.precision = args.precision or ("fp16" if cuda else "fp32")
    defaults(args, steps=(48 if cuda else 8, 2), batch_size=(16, 4), accumulate=(4, 2))
    args.warmup_max = args.warmup_max or 4 * args.steps
    if args.run_variant:
        answer(run_variant(args))
        return {}
    names = args.variants or [n for n, v in VARIANTS.items() if cuda or args.compile or not v["compile"]]
    # Idle OpenMP threads sleep: on a shared CPU, spinning ones wait for descheduled partners and
    # distort the comparison (docs/benchmarks.md, prediction speed). Set OMP_WAIT_POLICY to override.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    size = encoder_size(args)
    figures: dict[str, Any] = {
        "device": machine(args.device),
        "torch": torch.__version__,
        "model": "WavLM-large architecture" if size == "large" else f"{size} WavLM {training_encoder(size)}",
        "args": {key: str(value) if key == "json" else value for key, value in vars(args).items()},
        "results": [],
        "failed": {},
    }
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):  # the variants take turns, so that a busy spell hits them alike
        for name in names:
            try:
                result = child_json([sys.executable, __file__, "--run-variant", name, *argv], env, name)
            except ChildError as error:
                figures["failed"][name] = str(error)
                print(error, file=sys.stderr, flush=True)
                continue
            print(f"{name}: {result}", file=sys.stderr, flush=True)
            if name not in best or result["valid_audio_s_per_s"] > best[name]["valid_audio_s_per_s"]:
                best[name] = result
            figures["results"] = [best[n] for n in names if n in best]
            figures["load_average_at_end"] = load_average()
            finish(figures, args.json)  # after each variant: a run stopped later keeps what it measured
    figures["load_average_at_end"] = load_average()
    report(finish(figures, args.json))
    if figures["failed"]:
        sys.exit(f"failed: {', '.join(figures['failed'])}")
    return figures


if __name__ == "__main__":
    main()
