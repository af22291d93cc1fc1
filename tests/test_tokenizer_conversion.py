"""The converted fast tokenizer against SentencePiece itself: ids, decoding, the saved folder, refusals."""

from __future__ import annotations

import inspect
import json
import json.decoder
import textwrap
from pathlib import Path

import pytest
import sentencepiece as spm
from sp_fixtures import train_tiny_sentencepiece
from transformers import AutoTokenizer

from wmtp_cli.convert.tokenizer import build_fast_tokenizer, convert_sentencepiece_tokenizer
from wmtp_cli.errors import CheckpointError

CODE = (
    "def f(x):\n"
    "\tif x:  # a tab, then two spaces\n"
    "        return '<s>' + \"</s>\" + '<unk>'\n"
    "    \n"
    "\n\n\n"
    "class A:   \r\n"
    "    pass\t\t\n"
)

TRICKY = [
    "",
    " ",
    "\t",
    "\n",
    "\n\n\n",
    "\r\n",
    "line one\r\nline two\r\n",
    "trailing   ",
    "   leading",
    " x",
    "  x",
    *(" " * n for n in range(2, 10)),
    *("a" + " " * n + "b" for n in range(2, 10)),
    *(" " * n + "return x" for n in range(2, 10)),
    "\t\t\tx = 1\t# tabs\t",
    " \t \n \r\n ",
    "é",
    "café déjà vu",
    "日本語",
    "😀",
    "𝔸",
    "x😀y 𝔸z 日本",
    "e\u0301 ｶﾞ \u200b \u00a0 \u3000 \ufeff",
    "<s>",
    "</s>",
    "<unk>",
    "a<s>b</s>c<unk>d",
    "<s> hello </s>",
    "▁",
    "▁▁x",
    "a▁b ▁ c▁",
    " ▁ ",
    "\x00\x01\x7f",
    "0123456789 12345.678",
    CODE,
    CODE * 3 + "😀" + CODE,
]

SOURCES = [textwrap, json.decoder]


@pytest.fixture(scope="module", params=[400, 2000], ids=["vocab400", "vocab2000"])
def model_file(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sp") / "tokenizer.model"
    return train_tiny_sentencepiece(path, vocab_size=request.param)


@pytest.fixture(scope="module")
def sp(model_file):
    return spm.SentencePieceProcessor(model_file=str(model_file))


@pytest.fixture(scope="module")
def converted(model_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf")
    convert_sentencepiece_tokenizer(model_file, out)
    return out


@pytest.fixture(scope="module", params=["built", "reloaded"])
def tok(request, model_file, converted):
    if request.param == "built":
        return build_fast_tokenizer(model_file)
    return AutoTokenizer.from_pretrained(converted)


def test_ids_and_decoding_match_sentencepiece(tok, sp):
    bos = sp.bos_id()
    for text in TRICKY:
        ids = sp.encode(text)
        assert tok(text, add_special_tokens=False).input_ids == ids, repr(text)
        assert tok(text).input_ids == [bos, *ids], repr(text)
        assert tok.encode(text) == [bos, *ids], repr(text)
        assert tok.decode(ids) == sp.decode(ids), repr(text)
        assert tok.decode([bos, *ids], skip_special_tokens=True) == sp.decode(ids), repr(text)
        assert tok.convert_ids_to_tokens(ids) == [sp.id_to_piece(i) for i in ids], repr(text)


def test_byte_fallback_is_exercised(sp):
    # Otherwise the non-ASCII cases above would prove less than they seem.
    pieces = sp.encode("日本語 𝔸 😀", out_type=str)
    assert "<0xF0>" in pieces
    assert any(p.startswith("<0x") for p in sp.encode("日本語", out_type=str))


def test_whole_source_files(tok, sp):
    for module in SOURCES:
        text = inspect.getsource(module)
        ids = sp.encode(text)
        assert tok(text, add_special_tokens=False).input_ids == ids, module.__name__
        assert tok.decode(ids) == sp.decode(ids) == text, module.__name__


def test_batch_and_pairs(tok, sp):
    texts = [*TRICKY, *(inspect.getsource(m) for m in SOURCES)]
    expected = [sp.encode(text) for text in texts]
    assert tok(texts, add_special_tokens=False).input_ids == expected
    assert tok(texts).input_ids == [[sp.bos_id(), *ids] for ids in expected]
    assert tok.batch_decode(expected) == [sp.decode(ids) for ids in expected]
    # Pairs as Llama: <s> A <s> B, no </s>.
    a, b = " first  part", "\tsecond <s>"
    assert tok(a, b).input_ids == [sp.bos_id(), *sp.encode(a), sp.bos_id(), *sp.encode(b)]


def test_literal_special_tokens_are_text(tok, sp):
    assert tok.split_special_tokens is True
    text = "x = '<s>' + '</s>' + '<unk>'"
    ids = tok(text).input_ids
    assert ids == [sp.bos_id(), *sp.encode(text)]
    assert not {sp.bos_id(), sp.eos_id(), sp.unk_id()} & set(ids[1:])


def test_special_tokens_and_padding(tok, sp):
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<s>", "</s>", "<unk>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (sp.bos_id(), sp.eos_id(), sp.unk_id())
    assert tok.pad_token is None  # Llama has none; the trainer chooses one
    assert len(tok) == sp.vocab_size()
    assert tok.decode([]) == ""
    ids = sp.encode("hi there")
    assert tok.decode([sp.bos_id(), *ids, sp.eos_id()], skip_special_tokens=True) == sp.decode(ids)


def _char_starts(sp, ids: list[int]) -> set[int]:
    """Indices in ``ids`` where a character starts: not inside a byte-fallback character."""
    starts, pending = set(), 0
    for index, piece in enumerate(sp.id_to_piece(i) for i in ids):
        if pending:
            pending -= 1
            continue
        starts.add(index)
        if piece.startswith("<0x") and len(piece) == 6:
            lead = int(piece[3:5], 16)
            pending = 3 if lead >= 0xF0 else 2 if lead >= 0xE0 else 1 if lead >= 0xC0 else 0
    return starts | {len(ids)}


def test_decode_slices_that_start_mid_text(tok, sp):
    text = "x = 'naïve'  # 日本語\n\tif  y:\n        z = '𝔸😀' + \"<s>\"\n" + CODE
    ids = sp.encode(text)
    starts = _char_starts(sp, ids)
    assert len(starts) < len(ids)  # some slices below do cut characters
    x = sp.piece_to_id("x")
    checked = 0
    for begin in range(len(ids)):
        ends = {len(ids), *range(begin + 1, min(begin + 9, len(ids)))}
        for end in sorted(ends):
            piece = ids[begin:end]
            if begin in starts and end in starts:
                assert tok.decode(piece) == sp.decode(piece), (begin, end)
                checked += 1
            elif end == len(ids):
                # Starts inside a byte-encoded character: tokenizers' byte fallback turns the whole
                # run of byte pieces into U+FFFD, one per byte (SentencePiece keeps whole characters).
                run = next(i for i in range(begin, end + 1) if i == end or not sp.is_byte(ids[i]))
                rest = sp.decode([x, *ids[run:end]])[1:]
                assert tok.decode(piece) in (sp.decode(piece), "\ufffd" * (run - begin) + rest), begin
    assert checked > 5 * len(ids)


def test_cut_character_decodes_to_replacement_characters(tok, sp):
    ids = sp.encode("𝔸𝔸")
    assert [sp.id_to_piece(i) for i in ids[1:5]] == ["<0xF0>", "<0x9D>", "<0x94>", "<0xB8>"]
    assert sp.decode(ids[2:]) == "\ufffd" * 3 + "𝔸"
    assert tok.decode(ids[2:]) in (sp.decode(ids[2:]), "\ufffd" * 7)
    assert tok.decode(ids[1:5]) == sp.decode(ids[1:5]) == "𝔸"
    assert tok.decode(ids[2:5]) == sp.decode(ids[2:5]) == "\ufffd" * 3


def test_converted_folder(converted, model_file, sp):
    names = {p.name for p in converted.iterdir()}
    assert names >= {"tokenizer.json", "tokenizer_config.json", "tokenizer.model"}
    assert (converted / "tokenizer.model").read_bytes() == model_file.read_bytes()
    config = json.loads((converted / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # known to transformers 4.x and 5.x
    assert config["split_special_tokens"] is True
    assert config["clean_up_tokenization_spaces"] is False
    reloaded = AutoTokenizer.from_pretrained(converted)
    assert reloaded.split_special_tokens is True
    assert reloaded("<s>").input_ids == [sp.bos_id(), *sp.encode("<s>")]


def test_converting_into_an_existing_folder(tmp_path, model_file, sp):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    convert_sentencepiece_tokenizer(str(model_file), str(out))
    assert (out / "config.json").read_text() == "{}"
    assert AutoTokenizer.from_pretrained(out).encode(CODE, add_special_tokens=False) == sp.encode(CODE)
    # The model file may already live in the output folder.
    convert_sentencepiece_tokenizer(out / "tokenizer.model", out)
    assert (out / "tokenizer.model").read_bytes() == model_file.read_bytes()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a sentencepiece model\n", bytes(range(256)) * 4, "truncated"],
    ids=["empty", "text", "binary", "truncated"],
)
def test_corrupt_model_file(tmp_path, model_file, content):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(model_file.read_bytes()[:1000] if content == "truncated" else content)
    with pytest.raises(CheckpointError, match=r"tokenizer\.model"):
        build_fast_tokenizer(bad)
    with pytest.raises(CheckpointError):
        convert_sentencepiece_tokenizer(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_model_that_sentencepiece_rejects(tmp_path, model_file):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.pieces.append(proto.pieces[300])  # a duplicate piece: valid protobuf, invalid model
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(proto.SerializeToString())
    with pytest.raises(CheckpointError, match="not a valid SentencePiece model"):
        build_fast_tokenizer(bad)


def test_missing_model_file(tmp_path):
    with pytest.raises(CheckpointError, match="no SentencePiece tokenizer"):
        convert_sentencepiece_tokenizer(tmp_path / "nowhere" / "tokenizer.model", tmp_path / "out")
    with pytest.raises(CheckpointError, match="no SentencePiece tokenizer"):
        build_fast_tokenizer(tmp_path)  # a folder, not a file


@pytest.mark.parametrize(
    "overrides",
    [{"add_dummy_prefix": False}, {"byte_fallback": False}, {"pad_id": 3}],
    ids=["no-dummy-prefix", "no-byte-fallback", "pad"],
)
def test_other_supported_options(tmp_path, overrides):
    model_file = train_tiny_sentencepiece(tmp_path / "tokenizer.model", **overrides)
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    convert_sentencepiece_tokenizer(model_file, tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    for text in [*TRICKY, inspect.getsource(textwrap)]:
        ids = sp.encode(text)
        assert tok(text, add_special_tokens=False).input_ids == ids, repr(text)
        if sp.unk_id() not in ids:  # SentencePiece writes <unk> as " ⁇ ", Hugging Face as "<unk>"
            assert tok.decode(ids) == sp.decode(ids), repr(text)
    if "pad_id" in overrides:
        assert (tok.pad_token, tok.pad_token_id) == ("<pad>", 3)
    if "byte_fallback" in overrides:
        assert sp.unk_id() in sp.encode("𝔸")  # runs of unknown characters fuse into one <unk>, as in sp
        assert tok("𝔸𝔸 日本語", add_special_tokens=False).input_ids == sp.encode("𝔸𝔸 日本語")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"normalization_rule_name": "nmt_nfkc"}, "normalisation rule"),
        ({"remove_extra_whitespaces": True}, "remove_extra_whitespaces"),
        ({"model_type": "unigram"}, "unigram"),
        ({"user_defined_symbols": ["<tab>"]}, "user-defined"),
    ],
    ids=["nfkc", "remove-extra-whitespaces", "unigram", "user-defined"],
)
def test_models_that_cannot_match_exactly_are_refused(tmp_path, overrides, message):
    model_file = train_tiny_sentencepiece(tmp_path / "tokenizer.model", **overrides)
    with pytest.raises(CheckpointError, match=message):
        convert_sentencepiece_tokenizer(model_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()
