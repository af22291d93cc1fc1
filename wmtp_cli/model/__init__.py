"""Meta's multi-token-prediction architecture as a transformers model, registered with the Auto classes.

Registered twice over: with ``AutoConfig``/``AutoModelForCausalLM`` (so ``import wmtp_cli`` is enough to load a
folder, with the classes of this package), and *for* those Auto classes (so ``save_pretrained`` copies
``configuration.py`` and ``modeling.py`` into the folder and names them in config.json's ``auto_map``: the folder
then loads with ``trust_remote_code=True`` in a Python without ``wmtp_cli``). Where ``wmtp_cli`` is imported and
``trust_remote_code`` is not passed, this package's classes load the folder and no code from it runs.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from wmtp_cli.model.configuration import MTPConfig, llama_ffn_hidden_size
from wmtp_cli.model.modeling import MTPForCausalLM, MTPOutput

AutoConfig.register(MTPConfig.model_type, MTPConfig, exist_ok=True)
AutoModelForCausalLM.register(MTPConfig, MTPForCausalLM, exist_ok=True)
MTPConfig.register_for_auto_class("AutoConfig")
MTPForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["MTPConfig", "MTPForCausalLM", "MTPOutput", "llama_ffn_hidden_size"]
