"""The weightings of stage 2, declared once: ``wmtp.weighting`` picks one by name.

A weighting says where its per-token importance (delta) comes from, which heads get a loss, and how
its weights are computed from (importance, labels, settings): one function, looked up by the
objective (:mod:`wmtp_cli.training.objective`), the recipe schema, ``wmtp compare``, the demo and
``wmtp plan``. Adding one is a :class:`Weighting` and a :func:`register` call here; its weight function
gets a test against a plain loop written from DESIGN.md in ``tests/test_losses.py``.

This module imports no torch, so that recipes validate and ``--help`` starts without it; each weight
function imports :mod:`wmtp_cli.losses` when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Importance = Literal["critic", "dense_rewards", "none"]


@dataclass(frozen=True)
class WeightOptions:
    """The recipe's settings that shape a weighting's softmax (``wmtp.temperature`` and the options on delta)."""

    temperature: float = 1.0
    abs_delta: bool = False
    zscore: bool = False
    uniform_mix: float = 0.0


@dataclass(frozen=True)
class Weighting:
    name: str
    help: str
    importance: Importance  # what plays delta: the critic's value changes, the dense rewards, or nothing
    first_head_only: bool  # only head 1 gets a loss (the other heads are frozen)
    # (importance (B, T) or None, labels (B, T), n_future, options) -> detached weights (B, T, n)
    weights: Callable[[Any, Any, int, WeightOptions], Any]

    @property
    def uses_critic(self) -> bool:
        return self.importance == "critic"

    @property
    def uses_delta(self) -> bool:
        """Whether the weights read a delta (the critic's, or the dense rewards): then each example's rewards
        matter, and the options on delta (abs_delta, zscore_delta, uniform_mix, temperature) change something."""
        return self.importance != "none"

    def active_heads(self, n_future: int) -> int:
        return 1 if self.first_head_only else n_future


WEIGHTINGS: dict[str, Weighting] = {}


def register(weighting: Weighting) -> Weighting:
    if weighting.name in WEIGHTINGS:
        raise ValueError(f"a weighting named {weighting.name!r} is registered already")
    WEIGHTINGS[weighting.name] = weighting
    return weighting


def weighting(name: str) -> Weighting:
    try:
        return WEIGHTINGS[name]
    except KeyError:
        raise ValueError(f"unknown weighting {name!r}; choose from {', '.join(WEIGHTINGS)}") from None


def _softmax_of_importance(importance, labels, n_future: int, options: WeightOptions):
    from wmtp_cli.losses import weights_from_importance

    return weights_from_importance(
        importance, labels, n_future, options.temperature, abs_delta=options.abs_delta, zscore=options.zscore,
        uniform_mix=options.uniform_mix,
    )  # fmt: skip


def _uniform(importance, labels, n_future: int, options: WeightOptions):
    from wmtp_cli.losses import uniform_weights

    return uniform_weights(labels, n_future)


def _next_token(importance, labels, n_future: int, options: WeightOptions):
    from wmtp_cli.losses import ntp_weights

    return ntp_weights(labels, n_future)


register(Weighting("critic", "softmax over the valid heads of the critic's delta / temperature (WMTP)", "critic",
                   False, _softmax_of_importance))  # fmt: skip
register(Weighting("uniform", "1 / |K_t| on every valid head: plain MTP", "none", False, _uniform))
register(Weighting("ntp", "head 1 alone: next-token prediction", "none", True, _next_token))
register(Weighting("dense_reward", "the critic's formula with delta taken from wmtp score's dense rewards, no critic",
                   "dense_rewards", False, _softmax_of_importance))  # fmt: skip
