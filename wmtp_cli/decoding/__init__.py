"""Decoding algorithms that use the MTP heads at inference time."""

from wmtp_cli.decoding.speculative import BlockCache, SpeculativeOutput, greedy_generate, speculative_generate

__all__ = ["BlockCache", "SpeculativeOutput", "greedy_generate", "speculative_generate"]
