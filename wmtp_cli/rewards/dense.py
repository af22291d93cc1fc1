"""Dense per-token rewards (``reward.dense``), a step after the sequence rewards, whichever source gave those.

``prefix``: the reward model's score change as each policy token is appended; ``attention``: the sequence
reward spread by the reward model's last-token attention (see :mod:`wmtp_cli.rewards.reward_model`). One value
per completion token of the policy's tokenizer, the tokens training examples label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

DENSE_KINDS = ("prefix", "attention")


def dense_rewards(
    kind: str,
    prompts: Sequence[str],
    completions: Sequence[str],
    rewards: Sequence[float],
    reward_model,
    policy_tokenizer,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[float]]:
    """The dense rewards of each (prompt, completion) whose sequence reward is ``rewards[i]``."""
    if kind not in DENSE_KINDS:
        raise ValueError(f"unknown dense reward kind {kind!r}; choose from {', '.join(DENSE_KINDS)}")
    out = []
    for prompt, completion, reward in zip(prompts, completions, rewards, strict=True):
        if kind == "prefix":
            out.append(reward_model.prefix_rewards(prompt, completion, policy_tokenizer))
        else:
            out.append(reward_model.attention_rewards(prompt, completion, reward, policy_tokenizer))
        if progress is not None:
            progress(len(out), len(prompts))
    return out
