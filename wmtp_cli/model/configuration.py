"""Configuration of Meta's multi-token-prediction (MTP) Llama architecture.

Field names follow transformers' Llama so that tools which read ``hidden_size`` or
``num_attention_heads`` work unchanged. ``num_hidden_layers`` counts every transformer block, as
Meta's ``n_layers`` does: ``num_hidden_layers - n_future_tokens`` trunk blocks plus one block per
head (DESIGN.md section 2).

Copied into every model folder with ``modeling.py`` (see there), so it imports nothing from ``wmtp_cli``.
"""

from __future__ import annotations

from transformers import PretrainedConfig


def llama_ffn_hidden_size(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """Meta's rule for the SwiGLU hidden size (11008 for the 7B models)."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class MTPConfig(PretrainedConfig):
    """A Llama trunk with ``n_future_tokens`` parallel output heads sharing one norm and unembedding.

    Args:
        vocab_size: tokens in the vocabulary (32,000 for Meta's models).
        hidden_size: model width (Meta's ``dim``).
        intermediate_size: SwiGLU hidden size; see :func:`llama_ffn_hidden_size`.
        num_hidden_layers: all blocks, trunk and heads together (Meta's ``n_layers``).
        num_attention_heads: query heads per block.
        num_key_value_heads: key/value heads (grouped-query attention when smaller).
        n_future_tokens: heads; head k (1-based) predicts the token k steps ahead.
        rms_norm_eps: epsilon of every RMSNorm.
        rope_theta: base of the rotary frequencies.
        max_position_embeddings: longest sequence the model was trained for (informational).
    """

    model_type = "meta_mtp"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 4096,
        intermediate_size: int = 11008,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = None,
        n_future_tokens: int = 4,
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 10000.0,
        max_position_embeddings: int = 4096,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        pad_token_id: int | None = None,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        if n_future_tokens < 1:
            raise ValueError(f"n_future_tokens must be >= 1, got {n_future_tokens}")
        if num_hidden_layers < n_future_tokens:
            raise ValueError(
                f"num_hidden_layers ({num_hidden_layers}) must be at least n_future_tokens ({n_future_tokens}): "
                "each head is one block"
            )
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by {num_attention_heads} heads")
        num_key_value_heads = num_key_value_heads or num_attention_heads
        if num_attention_heads % num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({num_key_value_heads})"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.n_future_tokens = n_future_tokens
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.head_dim = hidden_size // num_attention_heads
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @property
    def n_trunk_layers(self) -> int:
        """Blocks shared by all heads (Meta's ``layers.0 .. layers.{L-n-1}``)."""
        return self.num_hidden_layers - self.n_future_tokens
