"""``wmtp pretrain``: a small MTP model from scratch, with its own tokenizer, for trying ideas on a laptop."""

from wmtp_cli.pretraining.pretrain import PretrainResult, pretrain

__all__ = ["PretrainResult", "pretrain"]
