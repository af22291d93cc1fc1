"""``wmtp inspect-weights FILE`` from the user's inputs to what it shows: read the text (and the prompt), find
the model and critic (:mod:`wmtp_cli.inspection.locate`), settle the temperature, load, and inspect
(:func:`~wmtp_cli.inspection.weights_view.inspect_weights`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wmtp_cli.inspection.locate import DEFAULT_RUNS, Sources, find_sources, load_sources
from wmtp_cli.inspection.weights_view import InspectionResult, inspect_weights, read_inspection_text


@dataclass
class FileInspection:
    result: InspectionResult
    sources: Sources  # the model and critic read
    temperature: float  # tau of softmax(delta / tau)
    temperature_from: str  # "given", "the run's recipe" or "default"

    @property
    def header(self) -> dict[str, str]:
        """What was inspected with what, as (label, text) lines above the table and the HTML view."""
        temperature = f"{self.temperature:g} ({self.temperature_from})"
        return {"model": str(self.sources.model), "critic": str(self.sources.critic), "temperature": temperature}


def inspect_file(
    file: Path,
    model: str | None = None,
    critic: Path | None = None,
    runs: Path = DEFAULT_RUNS,
    temperature: float | None = None,
    prompt_file: Path | None = None,
    prompt_chars: int | None = None,
    out: Path | None = None,
    progress: Callable[..., None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> FileInspection:
    """Inspect ``file`` (the completion; the prompt from ``prompt_file`` or ``file``'s first ``prompt_chars``
    characters) with the critic named, or the latest run's under ``runs``.

    Every input is checked before the model loads, ``out`` (where the caller will write) included;
    ``announce(line)`` says which run was found when none was named.
    """
    from wmtp_cli.config import check_values
    from wmtp_cli.io import check_output

    if out is not None:
        check_output(out, "--out")
    if temperature is not None:
        check_values("wmtp", {"temperature": temperature}, names={"temperature": "--temperature"})
    prompt, text = read_inspection_text(file, prompt_file, prompt_chars)
    sources = find_sources(model, critic, runs)
    if sources.found and announce is not None:
        announce(f"using {sources.found} (model {sources.model})")
    tau, tau_from = _temperature(temperature, sources)
    progress = progress or _no_progress
    progress("loading model", 0, 1)
    lm, tokenizer, head, n_future = load_sources(sources)
    progress("loading model", 1, 1)
    result = inspect_weights(lm, tokenizer, head, text, prompt=prompt, temperature=tau, n_future=n_future,
                             progress=progress)  # fmt: skip
    return FileInspection(result, sources, tau, tau_from)


def _temperature(given: float | None, sources: Sources) -> tuple[float, str]:
    """The temperature and where it comes from: the one given, else the run's recipe's, else 1."""
    if given is not None:
        return given, "given"
    if sources.temperature:
        return sources.temperature, "the run's recipe"
    return 1.0, "default"


def _no_progress(*_args) -> None:
    pass
