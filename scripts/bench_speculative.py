"""Wall-clock speed of self-speculative decoding against plain greedy decoding on one MTP model.

    python scripts/bench_speculative.py MODEL_DIR [--prompts FILE | --n-prompts N] [--benchmark B] [--max-new-tokens N]
        [--n-draft K] [--device cuda] [--dtype bfloat16] [--ignore-eos] [--threads N] [--runs R] [--quiet]
        [--json PATH]

MODEL_DIR is any converted MTP folder (with its tokenizer). The prompts default to the first N
HumanEval problems (code, where the paper reports 3.0x for 7B n=4), or of ``--benchmark`` (e.g.
``tiny-code`` for the demo's model, whose test split it was never trained on); ``--prompts`` reads a .json
list (strings, or objects with "prompt"), a .jsonl file (one such item per line), or a text file
with one prompt per line. After a warm-up of both decoders, each of ``--runs`` runs (default 3) decodes
every prompt with both, in alternating order (flipped from run to run) so that neither always runs on
a warmer cache, with the same timer and the same KV cache (:func:`wmtp_cli.decoding.greedy_generate` and
:func:`wmtp_cli.decoding.speculative_generate`, batch size 1). Prints each run's rates, then plain
greedy and speculative side by side: median tokens/s over the runs, tokens per decoding forward, new
tokens and forwards; the prompts whose outputs were identical in every run, acceptance per draft
head, and the median of the runs' speed-ups. Exits with status 1 if any output differs from plain
greedy decoding.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wmtp_cli.model  # noqa: F401  (registers the MTP architecture with the Auto classes)
from wmtp_cli.decoding import SpeculativeOutput, greedy_generate, speculative_generate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="converted MTP model folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompts", type=Path, help=".json, .jsonl or one-prompt-per-line text file")
    source.add_argument("--n-prompts", type=int, default=8, help="first N prompts of --benchmark (default 8)")
    parser.add_argument("--benchmark", default="humaneval", help="benchmark of --n-prompts (default humaneval)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--n-draft", type=int, default=None, help="drafting heads (default: all, n - 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=[*DTYPES, "auto"], default="auto", help="auto: bfloat16 on CUDA, else fp32")
    parser.add_argument("--ignore-eos", action="store_true", help="always decode --max-new-tokens tokens")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--warmup-tokens", type=int, default=16, help="tokens per decoder in the warm-up run")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs over all prompts; medians reported")
    parser.add_argument("--quiet", action="store_true", help="no per-prompt lines")
    parser.add_argument("--json", type=Path, help="write the settings, per-prompt records and summary here")
    parser.add_argument(
        "--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
        help="also decode with torch.compile over a static cache (default backend inductor): four decoders side by "
        "side, compiled after the warm-up",
    )  # fmt: skip
    return parser.parse_args(argv)


def load_prompts(path: Path | None, n: int, benchmark: str = "humaneval") -> list[str]:
    if path is None:
        from wmtp_cli.evaluation.benchmarks import load_benchmark

        return [problem["prompt"] for problem in load_benchmark(benchmark, limit=n)]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        items = json.loads(text)
    elif path.suffix == ".jsonl":
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = [line for line in text.splitlines() if line.strip()]
    return [item["prompt"] if isinstance(item, dict) else str(item) for item in items]


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """Index of the first differing token of two (1, L) sequences, or None when equal."""
    a, b = a[0].tolist(), b[0].tolist()
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def strict_json(value):
    """``value`` with NaN (a draft head never reached, no decoding forward) as None: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict_json(item) for item in value]
    return value


def summarise(greedy: list[SpeculativeOutput], spec: list[SpeculativeOutput], n_draft: int) -> dict:
    g_tokens, s_tokens = sum(o.new_tokens for o in greedy), sum(o.new_tokens for o in spec)
    g_seconds, s_seconds = sum(o.seconds for o in greedy), sum(o.seconds for o in spec)
    proposed = [sum(o.draft_proposed[k] for o in spec) for k in range(n_draft)]
    accepted = [sum(o.draft_accepted[k] for o in spec) for k in range(n_draft)]
    g_rate, s_rate = ratio(g_tokens, g_seconds), ratio(s_tokens, s_seconds)
    return {
        "new_tokens": {"greedy": g_tokens, "speculative": s_tokens},
        "forwards": {"greedy": sum(o.forwards for o in greedy), "speculative": sum(o.forwards for o in spec)},
        # As SpeculativeOutput.tokens_per_forward: the prefill and its one token are left out.
        "tokens_per_forward": ratio(sum(o.new_tokens - 1 for o in spec), sum(o.decoding_forwards for o in spec)),
        "draft_proposed": proposed,
        "draft_accepted": accepted,
        "accepted_per_head": [ratio(a, p) for a, p in zip(accepted, proposed, strict=True)],
        "seconds": {"greedy": g_seconds, "speculative": s_seconds},
        "tokens_per_second": {"greedy": g_rate, "speculative": s_rate},
        "speedup": ratio(s_rate, g_rate),
    }


def decode_pair(run_greedy, run_spec, ids: torch.Tensor, max_new: int, greedy_first: bool):
    """Both decoders on one prompt, in the given order; returns (greedy, speculative) without their KV caches."""
    if greedy_first:
        g = run_greedy(ids, max_new)
        s = run_spec(ids, max_new)
    else:
        s = run_spec(ids, max_new)
        g = run_greedy(ids, max_new)
    g.cache = s.cache = None  # free the KV caches: only the counts are kept
    return g, s


def new_record(i: int, ids: torch.Tensor, g: SpeculativeOutput, s: SpeculativeOutput, diff: int | None) -> dict:
    return {
        "prompt": i,
        "prompt_tokens": ids.shape[1],
        "new_tokens": s.new_tokens,
        "identical": diff is None,
        "first_difference": diff,
        "greedy": {"forwards": g.forwards, "seconds": [g.seconds]},
        "speculative": {
            "forwards": s.forwards,
            "seconds": [s.seconds],
            "draft_proposed": s.draft_proposed,
            "draft_accepted": s.draft_accepted,
        },
    }


def add_run(record: dict, g: SpeculativeOutput, s: SpeculativeOutput, diff: int | None) -> None:
    """A later run of the same prompt: its times, and identical only if every run was."""
    record["greedy"]["seconds"].append(g.seconds)
    record["speculative"]["seconds"].append(s.seconds)
    if diff is not None and record["identical"]:
        record["identical"], record["first_difference"] = False, diff


def combine(runs: list[dict]) -> dict:
    """One summary of several runs over the same prompts: the counts of the first, the median rates and speed-up."""
    rates = {name: statistics.median(r["tokens_per_second"][name] for r in runs) for name in ("greedy", "speculative")}
    return {
        **runs[0],
        "seconds": {name: statistics.median(r["seconds"][name] for r in runs) for name in ("greedy", "speculative")},
        "tokens_per_second": rates,
        "speedup": statistics.median(r["speedup"] for r in runs),
        "speedup_per_run": [r["speedup"] for r in runs],
    }


def print_summary(summary: dict, identical: int, prompts: int, n_runs: int) -> None:
    """Plain greedy and speculative side by side, then identity, acceptance and the speed-up."""
    rates, tokens, forwards = summary["tokens_per_second"], summary["new_tokens"], summary["forwards"]
    rows = [
        (f"tokens/s (median of {n_runs})", f"{rates['greedy']:.1f}", f"{rates['speculative']:.1f}"),
        ("tokens per decoding forward", "1", f"{summary['tokens_per_forward']:.3f}"),
        ("new tokens", f"{tokens['greedy']}", f"{tokens['speculative']}"),
        ("forwards", f"{forwards['greedy']}", f"{forwards['speculative']}"),
    ]
    print(f"{'':32s} {'plain greedy':>14s} {'speculative':>14s}")
    for label, g, s in rows:
        print(f"{label:32s} {g:>14s} {s:>14s}")
    print(f"identical outputs: {identical}/{prompts}" + (f" (in each of {n_runs} runs)" if n_runs > 1 else ""))
    acceptance = ", ".join(
        f"head {k + 2}: {rate:.3f} ({a}/{p})"
        for k, (rate, a, p) in enumerate(
            zip(summary["accepted_per_head"], summary["draft_accepted"], summary["draft_proposed"], strict=True)
        )
    )
    print(f"acceptance per draft head (accepted/checked): {acceptance or 'none'}")
    per_run = ", ".join(f"{x:.2f}x" for x in summary["speedup_per_run"])
    print(f"wall-clock speed-up: {summary['speedup']:.2f}x (median; runs: {per_run})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype] if args.dtype != "auto" else torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).to(device).eval()
    n_future = getattr(model.config, "n_future_tokens", 1)
    n_draft = n_future - 1 if args.n_draft is None else args.n_draft
    eos = None if args.ignore_eos else tokenizer.eos_token_id
    prompts = load_prompts(args.prompts, args.n_prompts, args.benchmark)
    if not prompts:
        print("no prompts", file=sys.stderr)
        return 2
    encoded = [tokenizer(p, return_tensors="pt").input_ids.to(device) for p in prompts]  # (1, T) each

    def run_greedy(ids: torch.Tensor, max_new: int) -> SpeculativeOutput:
        return greedy_generate(model, ids, max_new, eos_token_id=eos)

    def run_spec(ids: torch.Tensor, max_new: int) -> SpeculativeOutput:
        return speculative_generate(model, ids, max_new, eos_token_id=eos, n_draft=n_draft)

    if args.compile:
        return compare_compiled(args, model, encoded, eos, n_draft)

    params = sum(p.numel() for p in model.parameters())
    print(
        f"model {args.model_dir} ({params / 1e6:.1f}M parameters, n_future_tokens={n_future}, n_draft={n_draft}) "
        f"on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), {dtype}; "
        f"{len(prompts)} prompts, max_new_tokens={args.max_new_tokens}, eos={eos}"
    )
    # Warm-up: kernel selection, allocator growth and lazy initialisation must not land in the first timing.
    run_greedy(encoded[0], min(args.warmup_tokens, args.max_new_tokens))
    run_spec(encoded[0], min(args.warmup_tokens, args.max_new_tokens))

    runs, records = [], []
    for run in range(args.runs):
        greedy, spec = [], []
        for i, ids in enumerate(encoded):
            g, s = decode_pair(run_greedy, run_spec, ids, args.max_new_tokens, greedy_first=(i + run) % 2 == 0)
            greedy.append(g)
            spec.append(s)
            diff = first_difference(g.sequences, s.sequences)
            if run == 0:
                records.append(new_record(i, ids, g, s, diff))
            else:
                add_run(records[i], g, s, diff)
            if run == 0 and not args.quiet:
                print(
                    f"[{i}] prompt {ids.shape[1]:4d} tok, new {s.new_tokens:4d} | greedy "
                    f"{ratio(g.new_tokens, g.seconds):8.1f} tok/s | speculative {ratio(s.new_tokens, s.seconds):8.1f} "
                    f"tok/s, {s.tokens_per_forward:.2f} tok/fwd | "
                    + ("identical" if diff is None else f"DIFFERS at token {diff}")
                )
        runs.append(summarise(greedy, spec, n_draft))
        rates = runs[-1]["tokens_per_second"]
        print(
            f"run {run + 1}/{args.runs}: greedy {rates['greedy']:.1f} tok/s, speculative {rates['speculative']:.1f} "
            f"tok/s, speed-up {runs[-1]['speedup']:.2f}x"
        )

    summary = combine(runs)
    identical = sum(r["identical"] for r in records)
    print_summary(summary, identical, len(records), args.runs)

    if args.json:
        report = {
            "settings": {
                "model_dir": str(args.model_dir),
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "dtype": str(dtype).removeprefix("torch."),
                "n_future_tokens": n_future,
                "n_draft": n_draft,
                "max_new_tokens": args.max_new_tokens,
                "eos_token_id": eos,
                "prompts": str(args.prompts) if args.prompts else f"HumanEval[:{args.n_prompts}]",
            },
            "records": records,
            "summary": {**summary, "identical": identical, "prompts": len(records), "runs": runs},
        }
        args.json.write_text(json.dumps(strict_json(report), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if identical != len(records):
        print("speculative output differs from plain greedy decoding", file=sys.stderr)
        return 1
    return 0


def compare_compiled(args, model, encoded: list[torch.Tensor], eos, n_draft: int) -> int:
    """Plain greedy and speculative decoding, each eager and compiled, on the same prompts: every run decodes every
    prompt with the four, in an order rotated from prompt to prompt. The warm-up decodes every prompt once with
    the compiled ones, so that compilation (one graph per cache capacity and block length) is outside the runs.
    Exits with status 1 if any output differs from eager plain greedy decoding."""
    decoders = {
        "greedy": lambda ids: greedy_generate(model, ids, args.max_new_tokens, eos_token_id=eos),
        "speculative": lambda ids: speculative_generate(model, ids, args.max_new_tokens, eos_token_id=eos,
                                                        n_draft=n_draft),
        "greedy --compile": lambda ids: greedy_generate(model, ids, args.max_new_tokens, eos_token_id=eos,
                                                        compile=args.compile),
        "speculative --compile": lambda ids: speculative_generate(model, ids, args.max_new_tokens, eos_token_id=eos,
                                                                  n_draft=n_draft, compile=args.compile),
    }  # fmt: skip
    names = list(decoders)
    print(f"{len(encoded)} prompts, max_new_tokens={args.max_new_tokens}, compile backend {args.compile}")
    started = time.perf_counter()
    for ids in encoded:  # warm-up, and compilation
        for name in names:
            decoders[name](ids)
    print(f"warm-up and compilation: {time.perf_counter() - started:.1f} s")
    rates: dict[str, list[float]] = {name: [] for name in names}
    differing = set()
    for run in range(args.runs):
        tokens, seconds = dict.fromkeys(names, 0), dict.fromkeys(names, 0.0)
        forwards, decoding_tokens = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
        for i, ids in enumerate(encoded):
            order = names[i % 4 :] + names[: i % 4]
            outputs = {name: decoders[name](ids) for name in order}
            for name, out in outputs.items():
                tokens[name] += out.new_tokens
                seconds[name] += out.seconds
                forwards[name] += out.decoding_forwards
                decoding_tokens[name] += out.new_tokens - 1
                if not torch.equal(out.sequences, outputs["greedy"].sequences):
                    differing.add((name, i))
        for name in names:
            rates[name].append(ratio(tokens[name], seconds[name]))
        print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{n} {rates[n][-1]:.1f} tok/s" for n in names))
    print(f"{'':24s} {'tokens/s (median)':>18s} {'tokens/forward':>15s} {'vs plain greedy':>16s}")
    for name in names:
        rate = statistics.median(rates[name])
        per_forward = ratio(decoding_tokens[name], forwards[name])
        speedups = [ratio(r, g) for r, g in zip(rates[name], rates["greedy"], strict=True)]
        print(f"{name:24s} {rate:18.1f} {per_forward:15.3f} {statistics.median(speedups):15.2f}x")
    same = len(encoded) * len(names) - len(differing)
    print(f"identical to plain greedy: {same}/{len(encoded) * len(names)} (prompt, decoder) pairs in every run")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
