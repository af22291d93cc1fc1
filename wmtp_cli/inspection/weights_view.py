"""What the critic makes of one text: per-token values V_t, deltas and the WMTP weights (DESIGN.md section 3).

:func:`inspect_weights` tokenises ``prompt + completion`` exactly as training does
(:func:`~wmtp_cli.data.tokenization.split_prompt_completion`: one text, split by character offsets, BOS
included with the prompt), runs the model's trunk once and the value head on it, and computes

- ``value``: V_t for every position t (prompt tokens too: the critic reads every state);
- ``delta``: delta_t = V_t - V_{t-1} (:func:`~wmtp_cli.losses.weights.token_deltas`; none for t = 0);
- ``weights``: w_{t,1..n}, the weights position t's heads give to tokens t+1..t+n, from
  :func:`~wmtp_cli.losses.weights.critic_weights` (the function training uses) with labels = -100 on the
  prompt and the completion's tokens trained;
- ``received``: the weight token j receives, sum over k of w_{j-k,k}: its total weight in L_WMTP. Each
  position hands out a total of 1, so under uniform weighting a token receives about 1 on average.

The weights are the plain softmax of delta / T: the recipe options ``abs_delta``, ``zscore_delta`` and
``uniform_mix`` are not applied, since the point is to see what the critic itself says. No EOS is
appended: the text is shown as it is (training appends EOS after each completion).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wmtp_cli.critic import critic_values
from wmtp_cli.errors import UsageError
from wmtp_cli.io import read_text_file
from wmtp_cli.losses import IGNORE_INDEX
from wmtp_cli.losses.diagnostics import received_weights, weight_diagnostics
from wmtp_cli.losses.weights import critic_weights, token_deltas, valid_heads, weight_statistics

# Tokens decoded together to find what one token adds to the text: enough to hold a whole UTF-8 character
# split into byte tokens (at most 4) with room to spare.
DECODE_WINDOW = 16
TOP_DELTAS = 5
# Larger texts are refused: 1 MB is ~300,000 tokens of code, minutes of work and a JSON of ~150 MB.
MAX_TEXT_BYTES = 1_000_000
WINDOW_BATCH_TOKENS = 8192  # windows of a long text run this many tokens to a forward pass


@dataclass
class TokenRow:
    position: int
    token_id: int
    text: str  # what the token adds to the decoded text: '' for special tokens and bytes of an unfinished character
    piece: str  # the vocabulary entry ('<s>', '▁de', '<0xE4>')
    trained: bool  # a completion token (False: prompt and BOS, which are masked)
    value: float  # V_t
    delta: float | None  # V_t - V_{t-1}; None for the first token
    weights: list[float]  # w_{t,1..n}: what position t's heads give to tokens t+1..t+n
    received: float  # sum over k of w_{t-k,k}: the weight this token receives as a target

    @property
    def token(self) -> str:
        """The token as text: its contribution to the text, or its piece when it adds nothing visible."""
        return self.text or self.piece

    def to_json(self) -> dict:
        return {
            "position": self.position,
            "token": self.token,
            "value": self.value,
            "delta": self.delta,
            "weights": self.weights,
            "trained": self.trained,
            "received": self.received,
        }


@dataclass
class InspectionSummary:
    n_tokens: int
    n_trained: int
    n_future: int
    temperature: float
    mean_weight_per_head: list[float]  # over positions that give weight (K_t nonempty), as training logs it
    weight_entropy: float  # mean over those positions of -sum_k w log w
    max_entropy: float  # log n: the entropy of uniform weights over n heads
    top_deltas: list[tuple[int, str, float]]  # (position, token, delta) of the completion's largest |delta|
    # how far the weights are from uniform (wmtp_cli.losses.diagnostics): kl, effective_heads, peaked,
    # delta_correlation; None where undefined
    diagnostics: dict[str, float | None] = field(default_factory=dict)

    def diagnostic_rows(self) -> list[tuple[str, str]]:
        """The diagnostics as (label, text) rows, for the table and the HTML page alike."""
        d = self.diagnostics

        def shown(value, spec):
            return "-" if value is None else format(value, spec)

        return [
            ("weight KL from uniform", f"{shown(d.get('kl'), '.4f')} (uniform: 0; one-hot: log |K_t|)"),
            ("effective heads / |K_t|", f"{shown(d.get('effective_heads'), '.3f')} (uniform: 1)"),
            ("positions with a weight > 2/|K_t|", shown(d.get("peaked"), ".1%")),
            ("weight received vs |delta|", f"{shown(d.get('delta_correlation'), '+.3f')} (Pearson)"),
        ]


@dataclass
class InspectionResult:
    rows: list[TokenRow]
    summary: InspectionSummary
    notes: list[str] = field(default_factory=list)  # caveats worth showing beside the numbers

    def to_json(self) -> list[dict]:
        return [row.to_json() for row in self.rows]


def read_inspection_text(
    file: Path, prompt_file: Path | None = None, prompt_chars: int | None = None
) -> tuple[str, str]:
    """``(prompt, completion)`` from the command's inputs: FILE, and the prompt from a file or FILE's start.

    Texts above :data:`MAX_TEXT_BYTES` are refused before they are read.
    """
    if prompt_file is not None and prompt_chars is not None:
        raise UsageError("--prompt-file and --prompt-chars both name the prompt: pass one of them")
    text = _read_input(file, "FILE")
    if not text:
        raise UsageError(f"FILE {file} is empty: give a text file with the completion to inspect")
    if prompt_file is not None:
        prompt = _read_input(prompt_file, "--prompt-file")
        if not prompt:
            raise UsageError(f"--prompt-file {prompt_file} is empty: give the prompt's text, or leave the option out")
        return prompt, text
    if prompt_chars is not None:
        if prompt_chars >= len(text):
            raise UsageError(f"--prompt-chars {prompt_chars} leaves no completion: {file} has {len(text)} characters")
        return text[:prompt_chars], text[prompt_chars:]
    return "", text


def _read_input(path: Path, what: str) -> str:
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_TEXT_BYTES:
        raise UsageError(
            f"{what} {path} is {path.stat().st_size / 1e6:.1f} MB; inspect-weights reads at most "
            f"{MAX_TEXT_BYTES / 1e6:.0f} MB (about {MAX_TEXT_BYTES // 3:,} tokens): inspect a part of it"
        )
    return read_text_file(path, what)


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """What each token adds to the decoded text, found by decoding a short window with and without it.

    Decoding tokens one at a time would not do: SentencePiece strips a leading space at the start of what
    it decodes, and a character split into byte tokens decodes only once all its bytes are there (until
    then the text ends in U+FFFD, and the token gets ''; the last byte gets the whole character).
    """
    starts = [max(0, i - DECODE_WINDOW) for i in range(len(ids))]
    # One batched call into the Rust tokenizer: decoding window by window from Python costs ~10x more.
    backend = tokenizer.backend_tokenizer
    befores = backend.decode_batch([ids[s:i] for i, s in enumerate(starts)], skip_special_tokens=True)
    afters = backend.decode_batch([ids[s : i + 1] for i, s in enumerate(starts)], skip_special_tokens=True)
    out = []
    for before, after in zip(befores, afters, strict=True):
        settled = before.rstrip("\ufffd")  # bytes still waiting for the rest of their character
        if after.endswith("\ufffd") or not after.startswith(settled):
            out.append("")
        else:
            out.append(after[len(settled) :])
    return out


def _check_model(model) -> int:
    if not hasattr(model, "embed_and_trunk") or getattr(model.config, "n_future_tokens", None) is None:
        raise UsageError(
            f"the model is a {type(model).__name__}, not a multi-token-prediction model (convert one with "
            "`wmtp download`)"
        )
    return int(model.config.n_future_tokens)


@torch.no_grad()
def inspect_weights(
    model,
    tokenizer,
    value_head,
    completion: str,
    prompt: str = "",
    temperature: float = 1.0,
    n_future: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> InspectionResult:
    """Values, deltas and weights of every token of ``prompt + completion``; see the module docstring.

    ``n_future`` heads are used (default: all the model has), as ``model.n_future`` does in training.
    A text longer than the model's context runs in overlapping windows (:func:`windowed_values`), and
    ``progress("inspecting", done, total)`` reports the windows.
    """
    n_future = _check_inputs(model, completion, temperature, n_future)
    ids, labels = _token_ids(tokenizer, prompt, completion)
    context = int(getattr(model.config, "max_position_embeddings", None) or len(ids))
    prefix = 1 if tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id else 0
    values = windowed_values(model, value_head, ids, context, prefix, progress)[None]  # (1, T) float32
    weights = critic_weights(values, labels, n_future, temperature)  # (1, T, n)
    deltas = token_deltas(values)  # (1, T)
    rows = _rows(tokenizer, ids, labels, values, deltas, weights)
    notes = [_window_note(len(ids), context, prefix)] if len(ids) > context else []
    summary = _summary(rows, weights, n_future, temperature)
    summary.diagnostics = weight_diagnostics(weights, valid_heads(labels, n_future), labels, deltas)
    return InspectionResult(rows, summary, notes)


def _check_inputs(model, completion: str, temperature: float, n_future: int | None) -> int:
    """The number of heads to use (``n_future``, default all the model has), once the inputs are usable."""
    available = _check_model(model)
    n_future = n_future or available
    if n_future > available:
        raise UsageError(f"{n_future} heads asked for, but the model has only {available}")
    if not temperature > 0:
        raise UsageError(f"the temperature must be > 0, got {temperature}")
    if not completion:
        raise UsageError("the completion is empty: the prompt takes the whole text")
    return n_future


def _token_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], torch.Tensor]:
    """The ids of ``prompt + completion`` as training tokenises them, and labels (1, T): -100 on the prompt."""
    from wmtp_cli.data.tokenization import split_prompt_completion

    try:
        prompt_ids, completion_ids, _ = split_prompt_completion(tokenizer, [prompt], [completion])[0]
    except TypeError as exc:  # a slow tokenizer has no character offsets
        raise UsageError(str(exc)) from None
    if not completion_ids:
        raise UsageError("the completion has no tokens of its own (the prompt's last token covers it)")
    ids = prompt_ids + completion_ids
    labels = torch.full((1, len(ids)), IGNORE_INDEX)
    labels[0, len(prompt_ids) :] = torch.tensor(completion_ids)
    return ids, labels


def _rows(tokenizer, ids: list[int], labels, values, deltas, weights) -> list[TokenRow]:
    """One :class:`TokenRow` a token, from the (1, T) values, deltas and labels and the (1, T, n) weights."""
    texts = token_texts(tokenizer, ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    trained = (labels[0] != IGNORE_INDEX).tolist()
    received = received_weights(weights)  # (1, T)
    v, d, w, r = values[0].tolist(), deltas[0].tolist(), weights[0].tolist(), received[0].tolist()
    return [
        TokenRow(position=t, token_id=ids[t], text=texts[t], piece=pieces[t], trained=trained[t], value=v[t],
                 delta=d[t] if t > 0 else None, weights=w[t], received=r[t])
        for t in range(len(ids))
    ]  # fmt: skip


def _window_note(n_tokens: int, context: int, prefix: int) -> str:
    seen = (context - prefix) // 2
    return (
        f"{n_tokens:,} tokens is more than the model's context of {context:,}: values come from overlapping "
        f"windows of {context:,} tokens, each value seeing at least the {seen:,} tokens before it"
    )


def windowed_values(model, value_head, ids: list[int], context: int, prefix: int = 0, progress=None) -> torch.Tensor:
    """V_t (T,) float32 of every position of ``ids``, the model never reading more than ``context`` tokens at once.

    A text within the context runs whole. A longer one runs in windows of ``context`` tokens, each
    starting with the text's first ``prefix`` tokens (BOS: every window starts as training rows do)
    and then a stretch of the rest; stretches overlap by half, and each window keeps only the values
    of its second half (the first window keeps all of its own), so every value has at least half a
    window of text before it. This is the sliding-window evaluation of a language model's perplexity;
    windows of equal length run several to a batch.
    """
    device = next(model.parameters()).device
    value_head = value_head.to(device)
    if len(ids) <= context:
        if progress:
            progress("inspecting", 0, 1)
        values = _values(model, value_head, torch.tensor([ids], device=device))[0]
        if progress:
            progress("inspecting", 1, 1)
        return values
    head, body = ids[:prefix], ids[prefix:]
    span = context - prefix  # body tokens a window holds
    if span < 2:
        raise UsageError(f"the model's context of {context} tokens is too short to inspect a text in windows")
    stride = span // 2
    starts = [*range(0, len(body) - span, stride), len(body) - span]  # the last window ends with the text
    values = torch.empty(len(ids))
    covered = 0  # body positions that have their value
    per_batch = max(1, WINDOW_BATCH_TOKENS // context)
    for first in range(0, len(starts), per_batch):
        group = starts[first : first + per_batch]
        batch = torch.tensor([head + body[s : s + span] for s in group], device=device)  # (G, context)
        window_values = _values(model, value_head, batch).cpu()  # (G, context)
        for s, v in zip(group, window_values, strict=True):
            if s == 0:
                values[:prefix] = v[:prefix]
            keep_from = max(covered, s)
            values[prefix + keep_from : prefix + s + span] = v[prefix + keep_from - s :]
            covered = s + span
        if progress:
            progress("inspecting", first + len(group), len(starts))
    return values


def _values(model, value_head, input_ids: torch.Tensor) -> torch.Tensor:
    """V (B, T) float32 of the value head on the model's trunk states."""
    h_trunk, rotary, _ = model.embed_and_trunk(input_ids)  # (B, T, d)
    return critic_values(value_head, model, input_ids, h_trunk, rotary).float()  # (B, T)


def _summary(rows: list[TokenRow], weights: torch.Tensor, n_future: int, temperature: float) -> InspectionSummary:
    stats = weight_statistics(weights)
    trained = [row for row in rows if row.trained and row.delta is not None]
    top = sorted(trained, key=lambda row: abs(row.delta), reverse=True)[:TOP_DELTAS]
    return InspectionSummary(
        n_tokens=len(rows),
        n_trained=sum(row.trained for row in rows),
        n_future=n_future,
        temperature=temperature,
        mean_weight_per_head=stats["mean_per_head"].tolist(),
        weight_entropy=float(stats["entropy"]),
        max_entropy=math.log(n_future),
        top_deltas=[(row.position, row.token, row.delta) for row in top],
    )
