"""The critic V(s_t): a value head on the MTP model's trunk (stage 1 trains it, stage 2 keeps it learning)."""

from wmtp_cli.critic.value_head import ValueHead, ValueHeadConfig, critic_values, has_value_head, token_surprise

__all__ = ["ValueHead", "ValueHeadConfig", "critic_values", "has_value_head", "token_surprise"]
