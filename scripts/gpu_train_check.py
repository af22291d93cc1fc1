"""The 7B n=4 training step on one GPU, measured: tokens/s, MFU and peak memory, critic against uniform weighting.

    python scripts/gpu_train_check.py [--steps 20] [--seq 2048] [--trunk-layers 28] [--json PATH]
    python scripts/gpu_train_check.py --tiny      # the same code at toy size on a CPU (a smoke test)

Builds Meta's 7B n=4 shape (d 4096, ffn 11008, 32 heads, vocab 32000: 28 trunk blocks + 4 head blocks)
with random weights, and trains it as ``train-wmtp`` does: the stage-2 objective
(:class:`~wmtp_cli.training.objective.WMTPObjective`) with the memory-efficient head loop, activation
checkpointing on every block, a value head trained alongside (lambda_vf 0.1), AdamW, gradient clipping,
all under FSDP2 (:func:`wmtp_cli.training.parallel.shard`, world size 1) with fp32 master weights and
bf16 compute and fp32 gradient reduction. One sequence of ``--seq`` tokens per step.

Critic and uniform steps are interleaved on the same model and optimizer (C U U C C U ...): the
objective's weighting switches between steps, so both see the same machine state and the ratio is of
pairs, not of runs at different times. Reported per weighting: median step time, tokens/s, MFU (6 x
parameters x tokens / time, over the GPU's dense bf16 peak: 989 TFLOP/s for an H100 or H200 SXM, 312
for an A100; ``--peak-tflops`` for others) and peak memory (``torch.cuda.max_memory_allocated``); the
critic / uniform ratio of step times with a bootstrap interval; and ``wmtp plan``'s estimate of the
same run beside the measured peak.

If the full fp32 weights, gradients and AdamW state (16 bytes a parameter: 108 GB for 6.7B) and the
activations do not fit the GPU, the trunk is cut to fewer layers, keeping the 7B width and head count,
and the report says so (``--trunk-layers`` sets it by hand).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from wmtp_cli.critic.value_head import ValueHead, ValueHeadConfig  # noqa: E402
from wmtp_cli.model.configuration import MTPConfig  # noqa: E402
from wmtp_cli.model.modeling import MTPForCausalLM  # noqa: E402
from wmtp_cli.planning.memory import Setup, memory  # noqa: E402
from wmtp_cli.planning.plan import model_shape  # noqa: E402
from wmtp_cli.training import parallel  # noqa: E402
from wmtp_cli.training.objective import ObjectiveSettings, WMTPObjective, loss_counts  # noqa: E402
from wmtp_cli.training.setup import enable_activation_checkpointing, param_groups  # noqa: E402

DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
GIB = 1 << 30


def config_for(args: argparse.Namespace) -> MTPConfig:
    if args.tiny:
        return MTPConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=6,
                         num_attention_heads=4, n_future_tokens=4)  # fmt: skip
    return MTPConfig(num_hidden_layers=args.trunk_layers + 4, n_future_tokens=4)  # the 7B defaults otherwise


def needed_bytes(config: MTPConfig, args: argparse.Namespace) -> int:
    """``wmtp plan``'s estimate for this run (FSDP2, world size 1, fp32 weights, bf16 compute, AC, head loop)."""
    from wmtp_cli.config import CriticConfig, Recipe

    shape, _ = model_shape(config, Recipe(critic=CriticConfig(hidden_size=args.critic_hidden)))
    setup = Setup(strategy="fsdp2", processes=1, param_dtype="fp32", compute_dtype="bf16" if args.cuda else "fp32",
                  trainable=shape.parameters + shape.critic_parameters, active_heads=4, micro_batch_tokens=args.seq,
                  checkpointing=True, head_loop=True, lora=False)  # fmt: skip
    return memory(shape, setup).total


def make_batch(args: argparse.Namespace, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (1, args.seq), generator=generator)
    labels = ids.clone()
    labels[:, : args.seq // 10] = -100  # a prompt
    return {
        "input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device),
        "reward": torch.ones(1, device=device), "dense": torch.zeros(1, args.seq, device=device),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each weighting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each weighting first")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--trunk-layers", type=int, default=None, help="default 28 (7B), fewer if it does not fit")
    parser.add_argument("--critic-hidden", type=int, default=1024)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, TFLOP/s")
    parser.add_argument("--tiny", action="store_true", help="a toy shape on the CPU: checks the script runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.cuda = torch.cuda.is_available() and not args.tiny
    if not args.cuda and not args.tiny:
        raise SystemExit("no GPU here: this script measures a GPU (run it with --tiny to check it on a CPU)")
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.tiny:
        args.seq, args.critic_hidden = min(args.seq, 128), 32

    gpu = torch.cuda.get_device_name(device) if args.cuda else "CPU"
    free = torch.cuda.get_device_properties(device).total_memory if args.cuda else None
    notes = []
    if args.trunk_layers is None:
        args.trunk_layers = 28
        while args.cuda and needed_bytes(config_for(args), args) > 0.92 * free and args.trunk_layers > 1:
            args.trunk_layers -= 1
        if args.trunk_layers < 28:
            notes.append(f"the full 7B state does not fit {free / GIB:.0f} GiB: {args.trunk_layers} trunk layers "
                         "instead of 28 (the 7B width and 4 heads kept)")  # fmt: skip
    peak_tflops = args.peak_tflops or next((v for k, v in DENSE_BF16_TFLOPS.items() if k in gpu), None)
    if args.cuda and peak_tflops is None:
        raise SystemExit(f"unknown dense bf16 peak for {gpu}: pass --peak-tflops")

    config = config_for(args)
    args.trunk_layers = config.n_trunk_layers
    torch.manual_seed(0)
    with device:
        model = MTPForCausalLM(config)  # fp32 master weights
        value_head = ValueHead(ValueHeadConfig(input_size=config.hidden_size, hidden_size=args.critic_hidden))
    enable_activation_checkpointing(model)
    model.train()
    settings = {name: ObjectiveSettings(weighting=name, n_future=4, lambda_vf=0.1, memory_efficient=True)
                for name in ("critic", "uniform")}  # fmt: skip
    objective = WMTPObjective(model, value_head, settings["critic"])
    with parallel.process_group("fsdp2", device):
        parallel.shard(objective, parallel.block_classes(model), device, "bf16" if args.cuda else None)
        optimizer = torch.optim.AdamW(param_groups(model, 1e-5, 0.0) + param_groups(value_head, 1e-4, 0.0), lr=1e-5)
        batch = make_batch(args, config.vocab_size, device)
        n_params = sum(p.numel() for p in model.parameters())
        sync = torch.cuda.synchronize if args.cuda else (lambda: None)

        def step(name: str) -> tuple[float, int]:
            objective.settings = settings[name]
            counts = loss_counts(batch, objective.settings)
            if args.cuda:
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            loss, _ = objective(batch, 1.0 / max(int(counts[0]), 1), 1.0 / max(int(counts[1]), 1))
            loss.backward()
            parallel.clip_grad_norm(objective.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            return time.perf_counter() - start, torch.cuda.max_memory_allocated() if args.cuda else 0

        for _ in range(args.warmup):
            step("critic")
            step("uniform")
        times: dict[str, list[float]] = {"critic": [], "uniform": []}
        peaks = {"critic": 0, "uniform": 0}
        for i in range(args.steps):
            for name in ("critic", "uniform") if i % 2 == 0 else ("uniform", "critic"):
                seconds, peak = step(name)
                times[name].append(seconds)
                peaks[name] = max(peaks[name], peak)

    pairs = [c / u for c, u in zip(times["critic"], times["uniform"], strict=True)]
    generator = torch.Generator().manual_seed(0)
    data = torch.tensor(pairs, dtype=torch.float64)
    medians = data[torch.randint(len(pairs), (2000, len(pairs)), generator=generator)].median(dim=1).values.sort()
    interval = [float(medians.values[50]), float(medians.values[1949])]  # the 2.5th and 97.5th percentiles
    report = {"gpu": gpu, "torch": torch.__version__, "trunk_layers": args.trunk_layers, "parameters": n_params,
              "seq": args.seq, "steps": args.steps, "peak_tflops": peak_tflops, "notes": notes,
              "plan_estimate_gib": needed_bytes(config, args) / GIB,
              "critic_over_uniform": {"median_pair": statistics.median(pairs), "interval": interval}}  # fmt: skip
    for name in ("critic", "uniform"):
        seconds = statistics.median(times[name])
        tokens_per_s = args.seq / seconds
        mfu = 6 * n_params * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None
        report[name] = {"step_s": seconds, "tokens_per_s": tokens_per_s, "mfu": mfu, "peak_gib": peaks[name] / GIB}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
