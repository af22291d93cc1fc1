"""The summary of a ``wmtp demo`` run: what the terminal table, the HTML report and ``summary.json`` show.

One dataclass a part, with the fields in the order ``summary.json`` lists them: :meth:`DemoSummary.as_dict`
is that file's content (``dataclasses.asdict``), so a field added here is a key added there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass
class PretrainSummary:
    cached: bool  # a model with these settings was already there
    steps: int
    loss: float | None  # the last logged loss; None when cached


@dataclass
class ScoreSummary:
    """The training completions' rewards against the data set's own labels."""

    completions: int
    correct: int  # reward >= 1
    agreement: float | None  # share of the labelled completions whose reward agrees with the label


@dataclass
class CriticSummary:
    """The critic on held-out problems: ``val_auc`` from ``wmtp train-critic``, the rest from
    :class:`~wmtp_cli.demo.evidence.CriticEvidence` on the test split."""

    val_auc: float | None
    test_auc: float | None
    n_test_correct: int
    n_test_incorrect: int
    mutated_abs_delta: float
    other_abs_delta: float
    delta_ratio: float | None
    n_mutated_tokens: int
    n_other_tokens: int


@dataclass
class EvalSettings:
    benchmark: str
    split: str
    n_problems: int
    n_samples: int  # per problem
    temperature: float
    k: list[int]


@dataclass
class ModelResult:
    """One evaluated model: the pretrained one, or a fine-tuning named by its weighting."""

    name: str
    model: str  # its folder
    pass_at_k: dict[str, float]  # {"1": 0.31, "10": 0.52}
    n_problems: int
    n_passed: int
    n_samples_total: int
    head_ce: list[float]  # each head's CE on the reference solutions
    head_top1: list[float]
    train_loss: float | None  # head 1's last logged CE in fine-tuning; None for the pretrained model
    weights: dict[str, float | None]  # the weight diagnostics of fine-tuning (losses.diagnostics)

    def pass_at(self, k: int) -> float | None:
        return self.pass_at_k.get(str(k))


@dataclass
class DemoSummary:
    recipe: str  # the path the user gave
    seconds: dict[str, float]  # per stage, and "total"
    pretrain: PretrainSummary
    score: ScoreSummary
    critic: CriticSummary
    eval: EvalSettings
    models: list[ModelResult]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The text of ``summary.json``."""
        return json.dumps(self.as_dict(), indent=2) + "\n"
