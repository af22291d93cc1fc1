"""The two training stages, on accelerate.

- :func:`train_critic`: stage 1, the value head on the frozen MTP model (``wmtp train-critic``).
- :func:`train_wmtp`: stage 2, critic-weighted MTP fine-tuning and its baselines (``wmtp train-wmtp``).
- :class:`WMTPObjective`: L_WMTP + lambda * L_VF for one micro-batch, with the memory-efficient head loop.
"""

from wmtp_cli.training.critic_stage import CriticReport, CriticResult, train_critic
from wmtp_cli.training.objective import ObjectiveSettings, WMTPObjective
from wmtp_cli.training.wmtp_stage import WMTPResult, train_wmtp

__all__ = [
    "CriticReport",
    "CriticResult",
    "ObjectiveSettings",
    "WMTPObjective",
    "WMTPResult",
    "train_critic",
    "train_wmtp",
]
