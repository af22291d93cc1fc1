"""Sharing a model on the Hugging Face hub: ``wmtp push`` and ``run.push_to_hub``.

- :func:`push_model`: a model folder and its generated model card to a hub repo, in one commit.
- :func:`build_model_card`: the card alone (base model and licence, data, recipe, weighting, evals, how to load).
- :func:`check_can_push`: a token, the hub not switched off, a valid repo id (before a run starts).
- :func:`push_after_training`: the push at the end of ``train-wmtp``.

Imports neither torch nor transformers.
"""

from wmtp_cli.hub.model_card import build_model_card
from wmtp_cli.hub.push import PushResult, check_can_push, push_after_training, push_model

__all__ = ["PushResult", "build_model_card", "check_can_push", "push_after_training", "push_model"]
