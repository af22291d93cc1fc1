"""WMTP: Critic-Weighted Multi-Token Prediction.

Importing the package registers Meta's multi-token-prediction architecture with transformers'
``AutoConfig`` and ``AutoModelForCausalLM``, so a converted folder loads like any causal LM::

    import wmtp_cli
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("checkpoints/7B_1T_4")

Python API:

- :class:`wmtp_cli.model.MTPConfig`, :class:`wmtp_cli.model.MTPForCausalLM`: the model.
- :func:`wmtp_cli.convert.convert_meta_checkpoint`: Meta's layout to a Hugging Face style folder.
- :func:`wmtp_cli.convert.download`: fetch from the hub (or read a local copy) and convert.
- :func:`wmtp_cli.config.load_recipe`: read, override and validate a YAML recipe.
"""

__version__ = "0.1.0"

from wmtp_cli.model import MTPConfig, MTPForCausalLM

__all__ = ["MTPConfig", "MTPForCausalLM", "__version__"]
