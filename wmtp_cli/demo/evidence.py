"""Does the critic find what decides the outcome? Two measurements on held-out tiny-code problems.

tiny-code's incorrect solutions are the correct one with a single recorded edit (the mutation span,
:func:`wmtp_cli.data.tiny_code.tiny_code_mutations`), so the tokens that decide the outcome are
known. On the test split (problems whose operator/constant combinations training never showed),
with the frozen model and a value head:

- **AUC of the final-state value** V at the completion's last token (EOS, as in training and in
  ``wmtp train-critic``'s report), correct against incorrect solutions: does the critic tell the outcome?
- **|delta| on the mutated tokens against the other completion tokens** of the incorrect solutions:
  delta_j = V_j - V_{j-1} (DESIGN.md section 3), so a critic that locates the error changes its value
  at the edited tokens, not spread over the sequence. A completion token is *mutated* when its
  character span overlaps the edit's span in the incorrect completion; EOS counts among the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from wmtp_cli.critic import critic_values
from wmtp_cli.data.records import ProblemRecord
from wmtp_cli.losses import token_deltas
from wmtp_cli.training.metrics import roc_auc


@dataclass
class CriticEvidence:
    auc: float | None  # final-state value, correct (positive) against incorrect; None without both classes
    n_correct: int
    n_incorrect: int
    mutated_abs_delta: float  # mean |delta| over the mutated tokens of the incorrect solutions
    other_abs_delta: float  # mean |delta| over their other completion tokens
    n_mutated_tokens: int
    n_other_tokens: int

    @property
    def delta_ratio(self) -> float:
        return self.mutated_abs_delta / self.other_abs_delta if self.other_abs_delta > 0 else float("inf")

    def as_dict(self) -> dict:
        return {
            "test_auc": self.auc, "n_test_correct": self.n_correct, "n_test_incorrect": self.n_incorrect,
            "mutated_abs_delta": self.mutated_abs_delta, "other_abs_delta": self.other_abs_delta,
            "delta_ratio": self.delta_ratio, "n_mutated_tokens": self.n_mutated_tokens,
            "n_other_tokens": self.n_other_tokens,
        }  # fmt: skip


@dataclass
class _Sequence:
    prompt: str
    completion: str
    correct: bool
    span: tuple[int, int] | None  # the mutation's characters in the completion (incorrect ones)


def _sequences(problems: Sequence[ProblemRecord], mutations: dict[str, dict[str, dict]]) -> list[_Sequence]:
    out = []
    for problem in problems:
        edits = mutations.get(problem["task_id"], {})
        out += [_Sequence(problem["prompt"], s, True, None) for s in problem["solutions"]]
        for text in problem["incorrect_solutions"]:
            if text in edits:
                out.append(_Sequence(problem["prompt"], text, False, (edits[text]["start"], edits[text]["end"])))
    return out


@torch.no_grad()
def critic_evidence(
    model,
    tokenizer,
    value_head,
    problems: Sequence[ProblemRecord],
    mutations: dict[str, dict[str, dict]],
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> CriticEvidence:
    """Both measurements (see the module docstring) for ``problems`` and their ``mutations``."""
    from wmtp_cli.data.tokenization import split_prompt_completion

    sequences = _sequences(problems, mutations)
    device = next(model.parameters()).device
    value_head = value_head.to(device).eval()
    finals: list[float] = []
    mutated: list[torch.Tensor] = []
    other: list[torch.Tensor] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        split = split_prompt_completion(tokenizer, [s.prompt for s in chunk], [s.completion for s in chunk])
        rows = [p + c + [tokenizer.eos_token_id] for p, c, _ in split]  # EOS ends every completion in training
        T = max(map(len, rows))
        # Right padding: attention is causal, so padding after a sequence cannot change its states.
        input_ids = torch.tensor([r + [r[-1]] * (T - len(r)) for r in rows], device=device)  # (B, T)
        h_trunk, rotary, _ = model.embed_and_trunk(input_ids)  # (B, T, d)
        values = critic_values(value_head, model, input_ids, h_trunk, rotary)  # (B, T)
        deltas = token_deltas(values).abs()  # (B, T)
        for b, (seq, (prompt_ids, completion_ids, spans)) in enumerate(zip(chunk, split, strict=True)):
            first, last = len(prompt_ids), len(prompt_ids) + len(completion_ids)  # last: the EOS
            finals.append(values[b, last].item())
            if seq.span is not None:
                lo, hi = seq.span
                hit = torch.tensor([s < hi and e > lo for s, e in spans] + [False], device=device)  # (tokens + EOS,)
                completion = deltas[b, first : last + 1]
                mutated.append(completion[hit].cpu())
                other.append(completion[~hit].cpu())
        if progress is not None:
            progress(min(start + batch_size, len(sequences)), len(sequences))

    correct = torch.tensor([s.correct for s in sequences])
    both = bool(correct.any()) and not bool(correct.all())
    mutated_all, other_all = torch.cat([torch.zeros(0), *mutated]), torch.cat([torch.zeros(0), *other])
    return CriticEvidence(
        auc=roc_auc(torch.tensor(finals), correct) if both else None,
        n_correct=int(correct.sum()), n_incorrect=int((~correct).sum()),
        mutated_abs_delta=mutated_all.mean().item(),  # NaN without incorrect solutions
        other_abs_delta=other_all.mean().item(),
        n_mutated_tokens=mutated_all.numel(), n_other_tokens=other_all.numel(),
    )  # fmt: skip
