"""The demo's eval stage with continuous batching against fixed batches through ``generate()`` (the old way).

    python scripts/bench_eval_sampling.py [RECIPE] [--model DIR] [--pairs 3] [--limit N] [--batch-size B]

RECIPE defaults to recipes/tiny-demo.yaml and the model to its run folder's pretrained ``model/`` (run
``wmtp pretrain RECIPE`` or the demo first). Each pair runs the whole eval stage twice, in alternating
order: ``run_eval`` on the recipe's eval section (load the model, sample, run the tests in the
sandbox, write the report), once as it is and once with the sampler replaced by the old one: prompts
in fixed batches of ``eval.batch_size`` sequences through ``model.generate()``, each batch decoded
until its longest row ends, stop sequences cut afterwards. Prints each pair's stage and sampling
times, the median ratio, and the row-steps (rows computed by decoding forwards) with the share spent
on rows that had already ended (at EOS or at the token that completed a stop sequence).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wmtp_cli.decoding.generation as generation
from wmtp_cli.config import load_recipe
from wmtp_cli.decoding.continuous import BatchingStats
from wmtp_cli.decoding.stopping import StopStrings, continuation, eos_ids, truncate_at_stop
from wmtp_cli.evaluation.runner import EvalRequest, run_eval
from wmtp_cli.runs import run_folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", default="recipes/tiny-demo.yaml")
    parser.add_argument("--model", type=Path, help="model folder (default: the recipe's pretrained model/)")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs (default 3)")
    parser.add_argument("--limit", type=int, help="first N problems only")
    parser.add_argument("--batch-size", type=int, help="eval.batch_size (default: the recipe's)")
    return parser.parse_args(argv)


def ended_at(tokenizer, prompt_ids: list[int], new: list[int], eos: frozenset[int], stopper: StopStrings) -> int:
    """How many of ``new`` a row needed: up to its EOS or the token that completed a stop sequence."""
    prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    for m in range(1, len(new) + 1):
        if new[m - 1] in eos or (stopper and stopper(prompt_ids, prompt_text, new[:m])):
            return m
    return len(new)


def fixed_batches(counts: BatchingStats):
    """The sampler as it was: fixed batches through ``generate()``, seeded per batch, stops cut afterwards."""

    @torch.no_grad()
    def sample(model, tokenizer, prompts, n=1, temperature=0.8, top_p=0.95, max_new_tokens=512, batch_size=8,
               stop=(), seed=0, progress=None, skip=(), on_problem=None, problem_keys=None, stats=None):  # fmt: skip
        start_time = time.perf_counter()
        eos, stopper = eos_ids(model, tokenizer), StopStrings(tokenizer, stop)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        tokenizer.padding_side = "left"
        per_batch = max(1, batch_size // n)
        results = []
        for first in range(0, len(prompts), per_batch):
            chunk = list(prompts[first : first + per_batch])
            batch = tokenizer(chunk, return_tensors="pt", padding=True)
            torch.manual_seed(seed + first)
            out = model.generate(**batch, do_sample=True, temperature=temperature, top_p=top_p,
                                 max_new_tokens=max_new_tokens, num_return_sequences=n,
                                 pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            width, steps = batch["input_ids"].shape[1], out.shape[1] - batch["input_ids"].shape[1]
            counts.forwards += steps - 1
            counts.row_steps += out.shape[0] * (steps - 1)
            for row in range(out.shape[0]):
                own = batch["input_ids"][row // n][batch["attention_mask"][row // n].bool()].tolist()
                new = out[row, width:].tolist()
                needed = ended_at(tokenizer, own, new, eos, stopper)
                counts.finished_row_steps += steps - needed
                counts.new_tokens += needed
            texts = [truncate_at_stop(continuation(tokenizer, batch["input_ids"][r // n][
                batch["attention_mask"][r // n].bool()].tolist(), out[r, width:].tolist()), stop)
                for r in range(out.shape[0])]  # fmt: skip
            for i in range(len(chunk)):
                results.append(texts[i * n : (i + 1) * n])
                if on_problem is not None:
                    on_problem(first + i, results[-1])
        counts.seconds += time.perf_counter() - start_time
        return results

    return sample


def continuous(counts: BatchingStats):
    def sample(*args, **kwargs):
        return continuous_batching(*args, **kwargs, stats=counts)

    return sample


continuous_batching = generation.sample_completions


def one_stage(recipe, model: Path, sampler, limit: int | None) -> tuple[float, dict]:
    generation.sample_completions = sampler
    try:
        with tempfile.TemporaryDirectory() as out:
            request = EvalRequest.for_model(recipe, model, Path(out))
            request.limit = limit
            start = time.perf_counter()
            [(report, _)] = run_eval(request, allow_code_execution=True)
            return time.perf_counter() - start, report
    finally:
        generation.sample_completions = continuous_batching


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = [f"eval.batch_size={args.batch_size}"] if args.batch_size else []
    recipe = load_recipe(args.recipe, overrides)
    model = args.model or run_folder(recipe) / "model"
    e = recipe.eval
    print(f"{model}: {e.benchmarks[0]}, n={e.n_samples}, max_new_tokens={e.max_new_tokens}, "
          f"batch_size={e.batch_size}, temperature={e.temperature}, {torch.get_num_threads()} threads")  # fmt: skip
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    one_stage(recipe, model, continuous(BatchingStats()), 2)  # warm-up: imports, the sandbox, the caches
    ratios = []
    for pair in range(args.pairs):
        old, new = BatchingStats(), BatchingStats()
        order = [("fixed", fixed_batches(old)), ("continuous", continuous(new))]
        if pair % 2:
            order.reverse()
        times, reports = {}, {}
        for name, sampler in order:
            times[name], reports[name] = one_stage(recipe, model, sampler, args.limit)
        ratios.append(times["fixed"] / times["continuous"])
        print(f"pair {pair + 1}: stage fixed {times['fixed']:.1f} s (sampling {old.seconds:.1f} s, tests "
              f"{reports['fixed'].seconds:.1f} s), continuous {times['continuous']:.1f} s (sampling {new.seconds:.1f} "
              f"s, tests {reports['continuous'].seconds:.1f} s): {ratios[-1]:.2f}x; pass@k fixed "
              f"{reports['fixed'].pass_at_k}, continuous {reports['continuous'].pass_at_k}")  # fmt: skip
        for name, counts in (("fixed", old), ("continuous", new)):
            share = counts.finished_row_steps / counts.row_steps if counts.row_steps else 0.0
            print(
                f"  {name}: {counts.forwards} decoding forwards, {counts.row_steps} row-steps, "
                f"{counts.finished_row_steps} on finished rows ({100 * share:.1f}%), {counts.new_tokens} tokens"
            )
    print(f"median stage speed-up over {args.pairs} pairs: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
