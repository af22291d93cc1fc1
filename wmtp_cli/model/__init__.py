"""Meta's multi-token-prediction architecture as a transformers model, registered with the Auto classes."""

from transformers import AutoConfig, AutoModelForCausalLM

from wmtp_cli.model.configuration import MTPConfig, llama_ffn_hidden_size
from wmtp_cli.model.modeling import MTPForCausalLM, MTPOutput

AutoConfig.register(MTPConfig.model_type, MTPConfig, exist_ok=True)
AutoModelForCausalLM.register(MTPConfig, MTPForCausalLM, exist_ok=True)

__all__ = ["MTPConfig", "MTPForCausalLM", "MTPOutput", "llama_ffn_hidden_size"]
