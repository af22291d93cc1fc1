"""Recipes: the YAML experiment description, its schema, validation and provenance.

- :func:`load_recipe`: read a YAML recipe, apply ``section.key=value`` overrides, validate it.
- :class:`Recipe` and its section dataclasses: the single source of keys, defaults and help.
- :func:`save_resolved_recipe`: write ``recipe.yaml`` and ``run_info.json`` beside an output.
- :func:`collect_provenance`: versions, git commit, command line and time, for any output.
- :func:`check_values`: the same checks for settings given as command-line flags.
- :func:`describe_keys`: every key's type, default and help, for display.
"""

from wmtp_cli.config.loader import (
    check_values,
    describe_keys,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
    recipe_to_yaml,
)
from wmtp_cli.config.provenance import collect_provenance, save_resolved_recipe
from wmtp_cli.config.schema import (
    CriticConfig,
    DataConfig,
    EvalConfig,
    ExecutionConfig,
    ModelConfig,
    PretrainConfig,
    Recipe,
    RewardConfig,
    RunConfig,
    WMTPConfig,
)

__all__ = [
    "CriticConfig",
    "DataConfig",
    "EvalConfig",
    "ExecutionConfig",
    "ModelConfig",
    "PretrainConfig",
    "Recipe",
    "RewardConfig",
    "RunConfig",
    "WMTPConfig",
    "check_values",
    "collect_provenance",
    "describe_keys",
    "load_recipe",
    "recipe_from_dict",
    "recipe_to_dict",
    "recipe_to_yaml",
    "save_resolved_recipe",
]
