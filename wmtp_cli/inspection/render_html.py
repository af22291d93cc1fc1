"""A self-contained HTML view of an :class:`~wmtp_cli.inspection.weights_view.InspectionResult`.

One file, inline CSS and a few lines of inline JavaScript, no fonts, images or scripts from the network:
it opens from disk in any browser. The text is shown as it reads, each token's background coloured by its
delta (green raised the critic's value, red lowered it) or by the weight it receives as a target (a toggle),
with its numbers on hover (the ``title`` tooltip and a panel that follows the pointer) and a legend with the
colour scale. Prompt tokens are grey: they are masked, never a target.

The colours are computed here, both of them per token (CSS variables ``--d`` and ``--w``), so the toggle
only switches which variable the stylesheet reads.
"""

from __future__ import annotations

import html

from wmtp_cli.inspection.weights_view import InspectionResult, TokenRow

WHITE = (255, 255, 255)
POSITIVE = (26, 152, 80)  # green: the token raised V
NEGATIVE = (215, 48, 39)  # red: the token lowered V
WEIGHT = (84, 39, 143)  # purple: weight received
PROMPT = "#e4e4e4"
# The strongest colour stops short of the full hue so that dark text stays readable on it.
MAX_MIX = 0.8

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.3em; margin: 0 0 .5em; }
table.meta { border-collapse: collapse; font-size: .9em; margin-bottom: 1em; }
table.meta td { padding: 2px 12px 2px 0; vertical-align: top; }
table.meta td:first-child { color: #666; }
.controls { margin: .5em 0; }
.legend { display: flex; align-items: center; gap: .6em; font-size: .9em; margin: .4em 0 1em; flex-wrap: wrap; }
.scale { width: 260px; height: 14px; border: 1px solid #aaa; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #aaa; vertical-align: middle; }
.note { color: #555; font-size: .85em; max-width: 60em; }
body[data-mode="delta"] .legend-weight, body[data-mode="weight"] .legend-delta { display: none; }
#panel { position: sticky; top: 0; background: #fafafa; border: 1px solid #ccc; padding: .4em .6em;
         font: .85em ui-monospace, monospace; white-space: pre; min-height: 5.5em; z-index: 1; }
#text { font: 14px/1.7 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
        word-break: break-all; border: 1px solid #ddd; padding: .8em; margin-top: .6em; }
.t { border-radius: 2px; cursor: default; }
body[data-mode="delta"] .t { background: var(--d); }
body[data-mode="weight"] .t { background: var(--w); }
.t:hover { outline: 2px solid #000; }
.t.p { color: #777; }
.t.s { font-size: .75em; color: #666; border: 1px dotted #999; margin: 0 1px; }
.ws { color: #999; }
"""

SCRIPT = """
for (const input of document.querySelectorAll('input[name="mode"]')) {
  input.addEventListener('change', () => { document.body.dataset.mode = input.value; });
}
const panel = document.getElementById('panel');
document.getElementById('text').addEventListener('mouseover', (event) => {
  const token = event.target.closest('.t');
  if (token) panel.textContent = token.title;
});
"""


def _mix(colour: tuple[int, int, int], amount: float) -> str:
    """``colour`` blended into white: 0 gives white, 1 gives MAX_MIX of the colour."""
    a = max(0.0, min(amount, 1.0)) * MAX_MIX
    r, g, b = (round(w + (c - w) * a) for c, w in zip(colour, WHITE, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _delta_colour(delta: float | None, scale: float) -> str:
    if delta is None or scale <= 0:
        return _mix(WHITE, 0)
    return _mix(POSITIVE if delta >= 0 else NEGATIVE, abs(delta) / scale)


def _tooltip(row: TokenRow) -> str:
    delta = "-" if row.delta is None else f"{row.delta:+.4f}"
    weights = " ".join(f"{w:.3f}" for w in row.weights)
    role = "completion" if row.trained else "prompt (masked)"
    return (
        f"#{row.position} {row.token!r}  [{role}]\n"
        f"V = {row.value:+.4f}   delta = {delta}\n"
        f"weights to t+1..t+{len(row.weights)}: {weights}\n"
        f"weight received: {row.received:.3f}"
    )


def _style(row: TokenRow, delta_scale: float, weight_scale: float) -> str:
    if not row.trained:
        return f"--d:{PROMPT};--w:{PROMPT}"
    weight = _mix(WEIGHT, row.received / weight_scale) if weight_scale > 0 else "#ffffff"
    return f"--d:{_delta_colour(row.delta, delta_scale)};--w:{weight}"


def _token_html(row: TokenRow, style: str) -> str:
    if row.text:
        # a line break has no width to colour: a visible mark before it gives the token something to hover
        body = html.escape(row.text).replace("\n", '<span class="ws">↵</span>\n')
        classes = "t" if row.trained else "t p"
    else:  # BOS, or a byte of a character that the next tokens finish
        body = html.escape(row.piece)
        classes = "t s" if row.trained else "t s p"
    return f'<span class="{classes}" style="{style}" title="{html.escape(_tooltip(row))}">{body}</span>'


def _legend(delta_scale: float, weight_scale: float, n_future: int) -> str:
    delta_gradient = f"linear-gradient(to right, {_mix(NEGATIVE, 1)}, #ffffff, {_mix(POSITIVE, 1)})"
    weight_gradient = f"linear-gradient(to right, #ffffff, {_mix(WEIGHT, 1)})"
    prompt = f'<span class="swatch" style="background:{PROMPT}"></span> prompt (masked, not trained)'
    delta_note = (
        "delta<sub>t</sub> = V<sub>t</sub> &minus; V<sub>t&minus;1</sub>: how much emitting the token changed the "
        "critic's predicted outcome. Green raised it, red lowered it; the scale ends at the largest |delta| of the "
        "completion."
    )
    weight_note = (
        f"Weight received by token j = &sum;<sub>k</sub> w<sub>j&minus;k,k</sub> (k = 1..{n_future}): the sum of "
        f"the weights the {n_future} heads that predict it give it, i.e. its total weight in L<sub>WMTP</sub>. "
        "Each position gives out 1 in all, so under uniform weighting a token receives about 1. The scale ends at "
        "the largest value in the completion."
    )
    return f"""
<div class="legend legend-delta" id="legend-delta">
  <b>Colour: delta</b> <span>{-delta_scale:+.3g}</span>
  <span class="scale" style="background:{delta_gradient}"></span> <span>{delta_scale:+.3g}</span> {prompt}
</div>
<p class="note legend-delta">{delta_note}</p>
<div class="legend legend-weight" id="legend-weight">
  <b>Colour: weight received</b> <span>0</span>
  <span class="scale" style="background:{weight_gradient}"></span> <span>{weight_scale:.3g}</span> {prompt}
</div>
<p class="note legend-weight">{weight_note}</p>"""


def render_html(result: InspectionResult, header: dict[str, str], title: str = "WMTP weights") -> str:
    """The whole page; ``header`` rows (model, critic, ...) are shown above the summary."""
    s = result.summary
    completion = [row for row in result.rows if row.trained]
    delta_scale = max((abs(row.delta) for row in completion if row.delta is not None), default=0.0)
    weight_scale = max((row.received for row in completion), default=0.0)

    meta = dict(header)
    meta["tokens"] = f"{s.n_tokens} ({s.n_trained} completion, {s.n_tokens - s.n_trained} prompt/BOS)"
    meta["mean weight per head"] = "  ".join(f"h{k + 1} {w:.3f}" for k, w in enumerate(s.mean_weight_per_head))
    meta["weight entropy"] = f"{s.weight_entropy:.3f} (uniform: {s.max_entropy:.3f})"
    meta.update(s.diagnostic_rows())
    meta["largest |delta|"] = ",  ".join(f"#{p} {tok!r} {d:+.4f}" for p, tok, d in s.top_deltas)
    for i, note in enumerate(result.notes):
        meta[f"note {i + 1}"] = note
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in meta.items())
    tokens = "".join(_token_html(row, _style(row, delta_scale, weight_scale)) for row in result.rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body data-mode="delta">
<h1>{html.escape(title)}</h1>
<table class="meta">
{rows}
</table>
<div class="controls">Colour by:
  <label><input type="radio" name="mode" value="delta" id="mode-delta" checked> delta</label>
  <label><input type="radio" name="mode" value="weight" id="mode-weight"> weight received</label>
</div>
{_legend(delta_scale, weight_scale, s.n_future)}
<div id="panel">Hover over a token to see its numbers.</div>
<div id="text">{tokens}</div>
<script>{SCRIPT}</script>
</body>
</html>
"""
