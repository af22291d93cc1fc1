"""What scoring builds once and shares across chunks: the policy, its tokenizer, the reward model, the sandbox."""

from __future__ import annotations

from wmtp_cli.config import Recipe
from wmtp_cli.data.records import ProblemRecord


class ScoringResources:
    """Each resource is built on first use, so a run builds only what its reward source and settings need."""

    def __init__(self, recipe: Recipe, problems: dict[str, ProblemRecord]):
        self.recipe = recipe
        self.problems = problems  # by task_id: what the sandbox runs a completion against
        self._policy = None
        self._policy_tokenizer = None
        self._reward_model = None
        self._executor = None

    def policy(self):
        """The model of model.path, which samples completions."""
        if self._policy is None:
            from wmtp_cli.model.loading import load_causal_lm

            self._policy = load_causal_lm(self.recipe.model)
        return self._policy

    def policy_tokenizer(self):
        """The tokenizer of model.path: the policy's tokens, which dense rewards are aligned to."""
        if self._policy_tokenizer is None:
            from wmtp_cli.model.loading import load_tokenizer

            self._policy_tokenizer = load_tokenizer(self.recipe.model.path, need_eos=False)
        return self._policy_tokenizer

    def reward_model(self):
        if self._reward_model is None:
            from wmtp_cli.rewards.reward_model import RewardModel

            reward = self.recipe.reward
            self._reward_model = RewardModel(
                reward.reward_model, batch_size=reward.batch_size, attention=reward.dense == "attention"
            )
        return self._reward_model

    def executor(self):
        if self._executor is None:
            from wmtp_cli.execution import Executor

            reward = self.recipe.reward
            self._executor = Executor(
                timeout_s=reward.timeout_s, memory_mb=reward.memory_mb, workers=reward.workers,
                isolation=self.recipe.execution.isolation,
            )  # fmt: skip
        return self._executor

    def isolation_description(self) -> str | None:
        """The sandbox that ran the programs (None when no program ran)."""
        return self._executor.isolation_description if self._executor is not None else None
