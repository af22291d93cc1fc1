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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wmtp_cli.critic import critic_values
from wmtp_cli.errors import UsageError
from wmtp_cli.losses import IGNORE_INDEX
from wmtp_cli.losses.weights import critic_weights, token_deltas, weight_statistics

# Tokens decoded together to find what one token adds to the text: enough to hold a whole UTF-8 character
# split into byte tokens (at most 4) with room to spare.
DECODE_WINDOW = 16
TOP_DELTAS = 5


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


@dataclass
class InspectionResult:
    rows: list[TokenRow]
    summary: InspectionSummary
    notes: list[str] = field(default_factory=list)  # caveats worth showing beside the numbers

    def to_json(self) -> list[dict]:
        return [row.to_json() for row in self.rows]


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text in ``path``; a :class:`UsageError` for a missing, empty or binary file."""
    path = Path(path)
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "does not exist"
        raise UsageError(f"{what} {path} {where}: give a plain text file")
    data = path.read_bytes()
    if not data:
        raise UsageError(f"{what} {path} is empty: give a text file with the completion to inspect")
    if b"\0" in data:
        raise UsageError(f"{what} {path} looks binary (it holds NUL bytes): give a plain UTF-8 text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded): give a plain UTF-8 text file"
        ) from None


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
) -> InspectionResult:
    """Values, deltas and weights of every token of ``prompt + completion``; see the module docstring.

    ``n_future`` heads are used (default: all the model has), as ``model.n_future`` does in training.
    """
    available = _check_model(model)
    n_future = n_future or available
    if n_future > available:
        raise UsageError(f"{n_future} heads asked for, but the model has only {available}")
    if not temperature > 0:
        raise UsageError(f"the temperature must be > 0, got {temperature}")
    if not completion:
        raise UsageError("the completion is empty: the prompt takes the whole text")
    from wmtp_cli.data.tokenization import split_prompt_completion

    try:
        prompt_ids, completion_ids, _ = split_prompt_completion(tokenizer, [prompt], [completion])[0]
    except TypeError as exc:  # a slow tokenizer has no character offsets
        raise UsageError(str(exc)) from None
    if not completion_ids:
        raise UsageError("the completion has no tokens of its own (the prompt's last token covers it)")
    ids = prompt_ids + completion_ids
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, len(prompt_ids) :] = input_ids[0, len(prompt_ids) :]

    h_trunk, rotary, _ = model.embed_and_trunk(input_ids)  # (1, T, d)
    values = critic_values(value_head.to(device), model, input_ids, h_trunk, rotary)  # (1, T) float32
    weights = critic_weights(values, labels, n_future, temperature)  # (1, T, n)
    deltas = token_deltas(values)  # (1, T)
    received = _received(weights)  # (1, T)

    texts = token_texts(tokenizer, ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    trained = (labels[0] != IGNORE_INDEX).tolist()
    v, d, w, r = values[0].tolist(), deltas[0].tolist(), weights[0].tolist(), received[0].tolist()
    rows = [
        TokenRow(position=t, token_id=ids[t], text=texts[t], piece=pieces[t], trained=trained[t], value=v[t],
                 delta=d[t] if t > 0 else None, weights=w[t], received=r[t])
        for t in range(len(ids))
    ]  # fmt: skip
    notes = []
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and len(ids) > limit:
        notes.append(f"{len(ids)} tokens is more than the {limit} the model was trained for: later values extrapolate")
    return InspectionResult(rows, _summary(rows, weights, n_future, temperature), notes)


def _received(weights: torch.Tensor) -> torch.Tensor:
    """received[b, j] = sum over k of w[b, j-k, k-1]: the total weight token j gets from the heads that predict it."""
    B, T, n = weights.shape
    out = torch.zeros(B, T, dtype=weights.dtype, device=weights.device)
    for k in range(1, min(n, T - 1) + 1):
        out[:, k:] += weights[:, : T - k, k - 1]
    return out


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
