"""How far from uniform each weighting setting puts a trained critic's weights, on the data it would train on.

    python scripts/weight_settings.py recipes/tiny-demo.yaml [--critic DIR] [--limit N]

Reads the recipe's model, its critic (``<run folder>/critic`` unless ``--critic``) and its scored data,
keeps what the LM loss trains on (``wmtp.min_reward`` applies), computes the critic's deltas once, and
for each setting below the weights training would use and their diagnostics
(:mod:`wmtp_cli.losses.diagnostics`): KL from uniform, effective heads, the share of peaked positions,
the weight-|delta| correlation, and the KL as a multiple of ``temperature 1`` (DESIGN.md's default).
No training: the same critic and the same tokens for every setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SETTINGS = [  # (label, temperature, abs_delta, zscore_delta, uniform_mix)
    ("temperature 1 (DESIGN.md's default)", 1.0, False, False, 0.0),
    ("temperature 0.1", 0.1, False, False, 0.0),
    ("temperature 0.03", 0.03, False, False, 0.0),
    ("abs_delta, temperature 0.03", 0.03, True, False, 0.0),
    ("zscore_delta, temperature 1", 1.0, False, True, 0.0),
    ("zscore_delta, temperature 0.5", 0.5, False, True, 0.0),
    ("zscore_delta, temperature 1, uniform_mix 0.1", 1.0, False, True, 0.1),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--critic", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N examples only")
    args = parser.parse_args(argv)

    from wmtp_cli.config import load_recipe
    from wmtp_cli.critic import ValueHead, critic_values
    from wmtp_cli.data.examples import pad_id_of
    from wmtp_cli.data.scored import load_scored
    from wmtp_cli.losses import token_deltas, valid_heads, weights_from_importance
    from wmtp_cli.losses.diagnostics import diagnostic_sums, diagnostics_from_sums
    from wmtp_cli.model.loading import load_causal_lm, load_tokenizer
    from wmtp_cli.runs import critic_folder, scored_path
    from wmtp_cli.training.data import collate, rows, training_examples
    from wmtp_cli.training.objective import lm_labels

    recipe = load_recipe(args.recipe)
    tokenizer = load_tokenizer(recipe.model.path)
    model = load_causal_lm(recipe.model, device="cpu")
    head = ValueHead.load(args.critic or critic_folder(recipe), expect_input_size=model.config.hidden_size).eval()
    examples = training_examples(load_scored(scored_path(recipe)), tokenizer, recipe.data)
    n = recipe.model.n_future or model.config.n_future_tokens
    batch_of = partial(collate, pad_id=pad_id_of(tokenizer))
    count = len(examples) if args.limit is None else min(args.limit, len(examples))
    sums = {label: torch.zeros(10, dtype=torch.float64) for label, *_ in SETTINGS}
    with torch.no_grad():
        for start in range(0, count, 32):
            batch = batch_of(rows(examples, list(range(start, min(start + 32, count)))))
            labels = lm_labels(batch["labels"], batch["reward"], recipe.wmtp.min_reward)
            h, rotary, _ = model.embed_and_trunk(batch["input_ids"])
            deltas = token_deltas(critic_values(head, model, batch["input_ids"], h, rotary))
            valid = valid_heads(labels, n)
            for label, tau, absolute, zscore, mix in SETTINGS:
                weights = weights_from_importance(deltas, labels, n, tau, abs_delta=absolute, zscore=zscore,
                                                  uniform_mix=mix)  # fmt: skip
                sums[label] += diagnostic_sums(weights, valid, labels, deltas)
    base = diagnostics_from_sums(sums[SETTINGS[0][0]])["kl"]
    print(f"{count} examples, {int(sums[SETTINGS[0][0]][0])} weighted positions, n = {n} heads; "
          f"min_reward = {recipe.wmtp.min_reward}\n")  # fmt: skip
    print("| setting | KL from uniform | x temperature 1 | effective heads | peaked | corr(weight, abs delta) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, *_ in SETTINGS:
        d = diagnostics_from_sums(sums[label])
        corr = "-" if d["delta_correlation"] is None else f"{d['delta_correlation']:+.3f}"
        print(f"| {label} | {d['kl']:.5f} | {d['kl'] / base:.1f} | {d['effective_heads']:.3f} | {d['peaked']:.1%} "
              f"| {corr} |")  # fmt: skip


if __name__ == "__main__":
    main()
