"""Decoding algorithms that use the MTP heads at inference time."""

from wmtp_cli.decoding.speculative import SpeculativeOutput, greedy_generate, speculative_generate

__all__ = ["SpeculativeOutput", "greedy_generate", "speculative_generate"]
