"""Rewards for (prompt, completion) pairs: labels, sandboxed execution, reward models, dense rewards."""

from wmtp_cli.rewards.scoring import ScoreResult, SourceSummary, score

__all__ = ["ScoreResult", "SourceSummary", "score"]
