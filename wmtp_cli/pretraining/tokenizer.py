"""A byte-level BPE tokenizer trained on the corpus, as a transformers fast tokenizer.

Byte-level (as GPT-2's): every string encodes, whitespace included (indentation matters in Python),
and character offsets are exact, which the prompt/completion split relies on
(:mod:`wmtp_cli.data.tokenization`). Newlines are tokens of their own, so a prompt that ends a line
tokenises the same alone as in front of its completion. BOS is added in front of every text, EOS is appended to
completions by the training examples.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A ``PreTrainedTokenizerFast`` with ``vocab_size`` entries learnt from ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # A newline is always a token of its own. GPT-2's pattern would join it to the next line's indentation
    # ("\n    " as one piece), so a prompt ending in "\n" would end in a token the model never saw before a body.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]),
    ])  # fmt: skip
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=1 << 20
    )
