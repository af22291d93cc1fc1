"""The reward sources of ``wmtp score``, declared once: ``reward.source`` picks one by name.

A reward source is a plain callable, as TRL's reward functions are: it takes a batch of prompts and
completions, with the rows' other columns as keywords (``task_id``, ``label``) and an optional
``progress``, and returns one :class:`Reward` per completion. A source is registered as a factory that
builds that callable from the recipe and the scorer's shared resources (the sandbox, the reward model),
so what is expensive is built once and only when a source needs it. Dense per-token rewards are a
separate step (:mod:`wmtp_cli.rewards.dense`), run after whichever source gave the sequence rewards.

Adding a source is a factory and a :func:`register` call here, and a test in ``tests/test_scoring.py``.
This module imports no torch, so that recipes validate and ``--help`` starts without it; each factory
imports what it needs when it is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wmtp_cli.config import Recipe
    from wmtp_cli.rewards.resources import ScoringResources


@dataclass(frozen=True)
class Reward:
    """A completion's sequence reward r, and what the sandbox saw when the reward came from running it."""

    value: float
    n_passed: int | None = None
    n_tests: int | None = None
    status: str = ""


class RewardFunction(Protocol):
    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], *, progress: Callable[[int, int], None] | None = None,
        **columns: Sequence[Any],
    ) -> list[Reward]: ...  # fmt: skip


@dataclass(frozen=True)
class RewardSource:
    name: str
    help: str
    build: Callable[[Recipe, ScoringResources], RewardFunction]
    runs_code: bool = False  # runs the completions: needs the opt-in and a working sandbox
    needs_reward_model: bool = False  # reads reward.reward_model
    scores_samples: bool = True  # can score the model's samples (labels cannot: samples have none)
    progress_label: str = ""  # what the progress bar calls the work; empty: too quick to show


REWARD_SOURCES: dict[str, RewardSource] = {}


def register(source: RewardSource) -> RewardSource:
    if source.name in REWARD_SOURCES:
        raise ValueError(f"a reward source named {source.name!r} is registered already")
    REWARD_SOURCES[source.name] = source
    return source


def reward_source(name: str) -> RewardSource:
    try:
        return REWARD_SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown reward source {name!r}; choose from {', '.join(REWARD_SOURCES)}") from None


def reward_sources_help() -> str:
    return "; ".join(f"{source.name}: {source.help}" for source in REWARD_SOURCES.values()) + "."


def _labels(recipe: Recipe, resources: ScoringResources) -> RewardFunction:
    def labels(prompts, completions, *, label, progress=None, **columns):
        return [Reward(float(value)) for value in label]

    return labels


def _execution(recipe: Recipe, resources: ScoringResources) -> RewardFunction:
    from wmtp_cli.execution import job_for

    all_or_nothing = recipe.reward.all_or_nothing

    def execution(prompts, completions, *, task_id, progress=None, **columns):
        jobs = [job_for(resources.problems[t], c) for t, c in zip(task_id, completions, strict=True)]
        rewards = []
        for result in resources.executor().run(jobs, progress=progress):
            fraction = 1.0 if result.passed else result.n_passed / max(result.n_tests, 1)
            value = float(result.passed) if all_or_nothing else fraction
            rewards.append(Reward(value, result.n_passed, result.n_tests, result.status))
        return rewards

    return execution


def _reward_model(recipe: Recipe, resources: ScoringResources) -> RewardFunction:
    def reward_model(prompts, completions, *, progress=None, **columns):
        return [Reward(float(v)) for v in resources.reward_model().score(prompts, completions, progress)]

    return reward_model


register(RewardSource("labels", "1 for correct, 0 for incorrect solutions", _labels, scores_samples=False))
register(RewardSource("execution", "fraction of tests passed", _execution, runs_code=True,
                      progress_label="executing"))  # fmt: skip
register(RewardSource("reward_model", "a sequence classifier's score", _reward_model,
                      needs_reward_model=True, progress_label="reward model"))  # fmt: skip
