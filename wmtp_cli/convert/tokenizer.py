"""Meta's SentencePiece ``tokenizer.model`` as a Hugging Face fast tokenizer that matches it exactly.

The ``tokenizers.Tokenizer`` is built here from the SentencePiece model proto with ``tokenizers``
primitives, not with transformers' private converters (their API moves between releases), so the
same code works on transformers 4.4x and 5.x:

- model: BPE over every piece, merges derived from the vocabulary (see :func:`bpe_merges`), byte
  fallback as the proto says, runs of unknown characters fused into one ``<unk>`` as SentencePiece does;
- normaliser: the dummy prefix ``▁`` and ``" "`` -> ``"▁"`` (Llama's identity normalisation). The
  prefix is a ``Prepend`` normaliser, not ``Metaspace(prepend_scheme="first")``: Metaspace skips the
  prefix when the text already starts with a space, so ``" x"`` would become ``▁x`` where
  SentencePiece has ``▁▁x``;
- decoder: ``▁`` -> ``" "``, byte pieces -> bytes, fuse, and drop the dummy prefix's leading space;
- post-processor: ``<s>`` before each sequence (``<s> $A``, ``<s> $A <s> $B``), no ``</s>``, as
  Llama does.

Models this cannot match exactly are refused with :class:`~wmtp_cli.errors.CheckpointError`
(unigram, a normalisation rule other than identity, ``remove_extra_whitespaces``, user-defined
pieces, ...); Llama 2's tokenizer has none of these.

``split_special_tokens=True``: text is tokenised as SentencePiece does, so a literal ``"<s>"`` inside
code is characters, not the BOS id (``tok("<s>")`` is ``[bos] + sp.encode("<s>")``). Llama has no
pad token and none is invented here: a new id would not fit the embedding, and reusing ``<unk>`` or
``</s>`` is the trainer's decision (with left or right padding as it needs), so ``pad_token`` stays
unset unless the model file defines one, and ``padding_side`` keeps transformers' default.

Decoding equals ``SentencePieceProcessor.decode`` except where Hugging Face conventions differ:

- special tokens decode as their text (``"<s>"``, ``"<unk>"``) unless ``skip_special_tokens=True``,
  where SentencePiece writes nothing for ``<s>``/``</s>`` and ``" ⁇ "`` for ``<unk>`` (byte fallback
  means encoding never produces ``<unk>``);
- a run of byte pieces that is not valid UTF-8 as a whole (an id slice that cuts a byte-encoded
  character) decodes to one U+FFFD per byte in ``tokenizers``' byte-fallback decoder, where
  SentencePiece keeps the run's complete characters. Slices that do not cut such a character decode
  identically.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from wmtp_cli.errors import CheckpointError

if TYPE_CHECKING:
    from sentencepiece.sentencepiece_model_pb2 import ModelProto
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

SPACE = "▁"
TOKENIZER_FILE = "tokenizer.model"

# sentencepiece_model.proto: ModelProto.SentencePiece.Type and TrainerSpec.ModelType.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE = 1, 2


def load_model_proto(model_file: str | Path) -> ModelProto:
    """Parse and validate a SentencePiece model file; :class:`CheckpointError` if it is not one."""
    from google.protobuf.message import DecodeError
    from sentencepiece import SentencePieceProcessor
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    path = Path(model_file)
    if not path.is_file():
        raise CheckpointError(f"no SentencePiece tokenizer at {path}: expected Meta's tokenizer.model file")
    data = path.read_bytes()
    proto = model_pb2.ModelProto()
    corrupt = f"{path} is not a SentencePiece model (corrupt or truncated?)"
    try:
        proto.ParseFromString(data)
    except DecodeError as error:
        raise CheckpointError(f"{corrupt}: {error}") from None
    if not proto.pieces:
        raise CheckpointError(f"{corrupt}: it has no pieces")
    # SentencePiece's own loader checks what the proto cannot (unique pieces, a valid unk, ...).
    try:
        SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError, ValueError) as error:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a valid SentencePiece model: {message}") from None
    return proto


def _check_supported(proto: ModelProto, source: str) -> None:
    """Refuse what this converter would get wrong, rather than mis-tokenise silently."""
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != BPE:
        kind = {UNIGRAM: "unigram"}.get(trainer.model_type, f"type {trainer.model_type}")
        raise CheckpointError(f"{source}: a {kind} SentencePiece model; only BPE models (Llama's) convert")
    odd = sorted({p.type for p in proto.pieces} - {NORMAL, UNKNOWN, CONTROL, BYTE})
    if odd:
        names = {USER_DEFINED: "user-defined", UNUSED: "unused"}
        kinds = ", ".join(names.get(t, f"type {t}") for t in odd)
        raise CheckpointError(f"{source}: {kinds} pieces are not supported (Llama's tokenizer has none)")
    if sum(p.type == UNKNOWN for p in proto.pieces) != 1:
        raise CheckpointError(f"{source}: expected exactly one unknown piece")
    if normalizer.precompiled_charsmap:
        # tokenizers' Precompiled normaliser is not SentencePiece's: it looks up whole grapheme clusters
        # by their shortest prefix, so e.g. "\r\n" becomes one space under nmt_nfkc where SentencePiece
        # gives two, and "ｶﾞ" loses its voicing mark.
        raise CheckpointError(
            f"{source}: a normalisation rule ({normalizer.name or 'precompiled charsmap'}) is not supported; "
            "only identity normalisation (Llama's) converts exactly"
        )
    if normalizer.remove_extra_whitespaces:
        # Encoding could be matched with regex normalisers, but SentencePiece's decoder then drops one
        # "▁" from every leading piece until text appears, which no tokenizers decoder can express.
        raise CheckpointError(
            f"{source}: remove_extra_whitespaces=true is not supported (Llama's tokenizer keeps whitespace)"
        )
    if not normalizer.escape_whitespaces:
        raise CheckpointError(f"{source}: escape_whitespaces=false is not supported (Llama escapes to ▁)")
    if trainer.treat_whitespace_as_suffix:
        raise CheckpointError(f"{source}: treat_whitespace_as_suffix is not supported")
    if proto.HasField("denormalizer_spec") and proto.denormalizer_spec.precompiled_charsmap:
        raise CheckpointError(f"{source}: a denormaliser is not supported")
    if trainer.byte_fallback and any(
        f"<0x{b:02X}>" not in {p.piece for p in proto.pieces if p.type == BYTE} for b in range(256)
    ):
        raise CheckpointError(f"{source}: byte_fallback is on but some of the 256 byte pieces are missing")


def bpe_merges(proto: ModelProto) -> list[tuple[str, str]]:
    """The merges that make a ``tokenizers`` BPE encode like SentencePiece's BPE.

    SentencePiece merges, repeatedly, the adjacent pair whose concatenation is a piece with the
    highest score (leftmost first on ties). Every split of a normal piece into two normal pieces is
    therefore a merge, ranked by the merged piece's score (higher first), ties by its id.
    """
    vocab = {p.piece: i for i, p in enumerate(proto.pieces) if p.type == NORMAL}
    ranked: list[tuple[float, int, str, str]] = []
    for piece, index in vocab.items():
        score = proto.pieces[index].score
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, index, left, right))
    ranked.sort(key=lambda item: (item[0], item[1], vocab[item[2]], vocab[item[3]]))
    return [(left, right) for _, _, left, right in ranked]


def _normalizer(proto: ModelProto):
    from tokenizers import normalizers

    steps = []
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))  # to non-empty text only, as SentencePiece does
    steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps)


def build_tokenizer_object(proto: ModelProto) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` equivalent of a (validated, supported) SentencePiece BPE model."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    unk = next(p.piece for p in proto.pieces if p.type == UNKNOWN)
    model = models.BPE(
        vocab=vocab,
        merges=bpe_merges(proto),
        unk_token=unk,
        fuse_unk=True,
        byte_fallback=proto.trainer_spec.byte_fallback,
        dropout=None,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = _normalizer(proto)
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(steps)
    specials = [p.piece for p in proto.pieces if p.type in (UNKNOWN, CONTROL)]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bos = _special_piece(proto, proto.trainer_spec.bos_id)
    if bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, vocab[bos])]
        )
    return tokenizer


def _special_piece(proto: ModelProto, index: int) -> str | None:
    if 0 <= index < len(proto.pieces) and proto.pieces[index].type in (UNKNOWN, CONTROL):
        return proto.pieces[index].piece
    return None


def build_fast_tokenizer(model_file: str | Path) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` whose ids and decoding match ``SentencePieceProcessor(model_file)``."""
    from transformers import PreTrainedTokenizerFast

    proto = load_model_proto(model_file)
    _check_supported(proto, str(model_file))
    trainer = proto.trainer_spec
    bos, eos, pad = (_special_piece(proto, i) for i in (trainer.bos_id, trainer.eos_id, trainer.pad_id))
    unk = next(p.piece for p in proto.pieces if p.type == UNKNOWN)
    kwargs = {"pad_token": pad} if pad is not None else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer_object(proto),
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
        **kwargs,
    )
    # transformers before 4.4x's late releases ignores split_special_tokens in fast tokenizers.
    tokenizer.backend_tokenizer.encode_special_tokens = True
    return tokenizer


def convert_sentencepiece_tokenizer(model_file: str | Path, out_dir: str | Path) -> None:
    """Write the Hugging Face tokenizer files for ``model_file`` into ``out_dir``, with a copy of it.

    ``AutoTokenizer.from_pretrained(out_dir)`` then encodes and decodes as SentencePiece does.
    """
    model_file, out_dir = Path(model_file), Path(out_dir)
    tokenizer = build_fast_tokenizer(model_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    _portable_config(out_dir / "tokenizer_config.json")
    _portable_merges(out_dir / "tokenizer.json")
    if model_file.resolve() != (out_dir / TOKENIZER_FILE).resolve():
        shutil.copyfile(model_file, out_dir / TOKENIZER_FILE)
    logger.info("wrote a fast tokenizer for %s to %s", model_file, out_dir)


def _portable_config(path: Path) -> None:
    """Make ``tokenizer_config.json`` load the same way on transformers 4.x and 5.x.

    transformers 5 names the class ``TokenizersBackend``, which 4.x does not know; both know
    ``PreTrainedTokenizerFast``. ``split_special_tokens`` must survive the round trip (literal
    ``"<s>"`` in code stays text). The BOS lives in ``tokenizer.json``'s post-processor, which both
    versions load as is.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["split_special_tokens"] = True
    config["clean_up_tokenization_spaces"] = False
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _portable_merges(path: Path) -> None:
    """Write BPE merges as ``"left right"`` strings, the form every ``tokenizers`` release reads.

    ``tokenizers`` 0.20 and later write ``["left", "right"]`` pairs, which 0.19 (transformers
    4.40-4.44) cannot load. The string form is unambiguous here: escaped pieces contain no spaces.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    merges = data["model"].get("merges") or []
    if any(not isinstance(m, str) and any(" " in part for part in m) for m in merges):
        return
    data["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in merges]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
