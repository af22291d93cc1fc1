"""WMTP: Critic-Weighted Multi-Token Prediction.

Importing the package makes Meta's multi-token-prediction architecture known to transformers'
``AutoConfig`` and ``AutoModelForCausalLM``, so a converted folder loads like any causal LM::

    import wmtp_cli
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("checkpoints/7B_1T_4")

It does so lazily: ``import wmtp_cli`` imports neither torch nor transformers (so ``wmtp --help``
and the commands that need neither start at once); the architecture is registered the moment
transformers is imported, or at once if it already is.

Python API:

- :class:`wmtp_cli.model.MTPConfig`, :class:`wmtp_cli.model.MTPForCausalLM`: the model.
- :func:`wmtp_cli.convert.convert_meta_checkpoint`: Meta's layout to a Hugging Face style folder.
- :func:`wmtp_cli.convert.download`: fetch from the hub (or read a local copy) and convert.
- :func:`wmtp_cli.config.load_recipe`: read, override and validate a YAML recipe.
"""

import sys

__version__ = "0.1.0"

__all__ = ["MTPConfig", "MTPForCausalLM", "__version__"]


def __getattr__(name: str):
    if name in ("MTPConfig", "MTPForCausalLM"):
        from wmtp_cli import model

        return getattr(model, name)
    raise AttributeError(f"module 'wmtp_cli' has no attribute {name!r}")


class _RegisterWithTransformers:
    """Registers the MTP architecture with the Auto classes right after ``transformers`` is imported.

    A meta path finder by its ``find_spec`` alone: subclassing ``importlib.abc.MetaPathFinder`` would import
    ``importlib.resources`` (13 ms of every ``wmtp --help``).
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers":
            return None
        import importlib.util

        sys.meta_path.remove(self)  # one use; and the lookup below must not find us again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            import wmtp_cli.model  # noqa: F401  (registers; it imports transformers, which is now complete)

        loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    import wmtp_cli.model  # noqa: F401  (registers the architecture)
elif not any(isinstance(finder, _RegisterWithTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTransformers())
