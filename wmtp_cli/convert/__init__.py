"""Reading Meta's checkpoints: hub download, weight conversion, SentencePiece tokenizer conversion."""

from wmtp_cli.convert.download import DEFAULT_REPO, DEFAULT_VARIANT, download
from wmtp_cli.convert.meta_checkpoint import convert_meta_checkpoint

__all__ = ["DEFAULT_REPO", "DEFAULT_VARIANT", "convert_meta_checkpoint", "download"]
