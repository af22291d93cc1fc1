"""Rewards from a transformers sequence-classification model, whole-sequence and dense.

The reward model has its own tokenizer: each (prompt, completion) is joined as text and encoded
with it. Its score is the logit when the model has one label, else the probability of its last
label (for a binary classifier, "good").

Dense per-token rewards for the *policy's* completion tokens (one value per completion token as
:func:`wmtp_cli.data.tokenization.split_prompt_completion` splits them, the same tokens training
examples label) come in two kinds:

- ``prefix``: the reward model scores the prompt followed by each prefix of the completion that
  ends at a policy-token boundary; r_j = s_j - s_{j-1}, with s_0 the prompt alone. They sum to
  s_T - s_0.
- ``attention`` (Chan et al. 2024, "Dense Reward for Free in RLHF"): the sequence reward r is
  spread over the completion by the attention the reward model's last token pays to each
  completion token (last layer, mean over heads, renormalised over the completion), carried to
  the policy's tokens through character offsets. They sum to r.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from wmtp_cli.data.tokenization import completion_token_spans
from wmtp_cli.errors import UsageError
from wmtp_cli.rewards.alignment import spread_over_spans


class RewardModel:
    """A sequence classifier used as a reward: ``score(prompts, completions) -> list[float]``."""

    def __init__(self, path: str, batch_size: int = 16, device: str | None = None, attention: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from wmtp_cli.model.loading import check_model_source

        check_model_source(path, "reward.reward_model")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            kwargs = {"attn_implementation": "eager"} if attention else {}  # SDPA returns no attention weights
            self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype, **kwargs)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot load the reward model {path!r}: {str(exc).splitlines()[0]}") from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:  # batches need padding; the pad is masked out
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.batch_size = batch_size

    def _scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if logits.shape[-1] == 1:
            return logits[:, 0]
        return logits.softmax(-1)[:, -1]

    @torch.no_grad()
    def score_texts(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start : start + self.batch_size]), return_tensors="pt", padding=True)
            logits = self.model(**batch.to(self.device)).logits  # (B, num_labels)
            scores.extend(self._scores_from_logits(logits).tolist())
            if progress is not None:
                progress(len(scores), len(texts))
        return scores

    def score(self, prompts: Sequence[str], completions: Sequence[str], progress=None) -> list[float]:
        """One reward per (prompt, completion)."""
        return self.score_texts([p + c for p, c in zip(prompts, completions, strict=True)], progress)

    def prefix_rewards(self, prompt: str, completion: str, policy_tokenizer) -> list[float]:
        """Dense rewards: the change in score as each policy token of ``completion`` is appended."""
        _, spans = completion_token_spans(policy_tokenizer, prompt, completion)
        ends = [end for _, end in spans]
        scores = self.score_texts([prompt] + [prompt + completion[:end] for end in ends])
        return [scores[j + 1] - scores[j] for j in range(len(ends))]

    @torch.no_grad()
    def attention_rewards(self, prompt: str, completion: str, reward: float, policy_tokenizer) -> list[float]:
        """Dense rewards: ``reward`` spread by the last token's attention over the completion."""
        text = prompt + completion
        encoded = self.tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")[0].tolist()  # (T, 2) character spans in text
        out = self.model(**encoded.to(self.device), output_attentions=True)
        attention = out.attentions[-1][0].float().mean(0)[-1]  # (T,): last token's row, mean over heads
        in_completion = [
            float(attention[i]) if end > len(prompt) and end > start else 0.0 for i, (start, end) in enumerate(offsets)
        ]
        total = sum(in_completion)
        if total <= 0:  # no completion token receives attention: spread evenly
            in_completion = [1.0 if end > len(prompt) and end > start else 0.0 for start, end in offsets]
            total = sum(in_completion) or 1.0
        # Spans relative to the completion; a token straddling the boundary keeps its completion part.
        spans = [(max(start, len(prompt)) - len(prompt), end - len(prompt)) for start, end in offsets]
        _, policy_spans = completion_token_spans(policy_tokenizer, prompt, completion)
        return spread_over_spans([reward * w / total for w in in_completion], spans, policy_spans)
