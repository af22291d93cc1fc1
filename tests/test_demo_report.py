"""The ``wmtp demo`` report: PNG charts, the Markdown comparison table, the HTML page and writing both files."""

from __future__ import annotations

import base64
import copy
import dataclasses
import html
import json
from html.parser import HTMLParser

import pytest

from wmtp_cli.demo.report import curve_png, markdown_table, render_report, write_report
from wmtp_cli.demo.summary import (
    CriticSummary,
    DemoSummary,
    EvalSettings,
    ModelResult,
    PretrainSummary,
    ScoreSummary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _model(name: str, p1: float, p10: float, passed: int, train_loss: float | None) -> ModelResult:
    return ModelResult(
        name=name,
        model=f"runs/tiny-demo/{name}",
        pass_at_k={"1": p1, "10": p10},
        n_problems=200,
        n_passed=passed,
        n_samples_total=2000,
        head_ce=[0.5, 0.9, 1.2, 1.4],
        head_top1=[0.9, 0.8, 0.7, 0.6],
        train_loss=train_loss,
        # the weight diagnostics of a fine-tuning; the pretrained model has none
        weights={"kl": 0.123, "effective_heads": 0.85} if train_loss is not None else {},
    )


SUMMARY = DemoSummary(
    recipe="recipes/tiny-demo.yaml",
    seconds={
        "pretrain": 312.4,
        "score": 40.1,
        "train-critic": 30.2,
        "train-wmtp critic": 60.0,
        "train-wmtp uniform": 59.0,
        "train-wmtp ntp": 58.0,
        "eval": 100.0,
        "inspect": 3.0,
        "total": 800.0,
    },
    pretrain=PretrainSummary(cached=False, steps=600, loss=0.61),
    score=ScoreSummary(completions=2000, correct=500, agreement=1.0),
    critic=CriticSummary(
        val_auc=0.934,
        test_auc=0.917,
        n_test_correct=200,
        n_test_incorrect=600,
        mutated_abs_delta=0.12,
        other_abs_delta=0.01,
        delta_ratio=12.3,
        n_mutated_tokens=700,
        n_other_tokens=9000,
    ),
    eval=EvalSettings(benchmark="tiny-code", split="test", n_problems=200, n_samples=10, temperature=0.8, k=[1, 10]),
    models=[
        _model("pretrained", 0.2, 0.5, 400, None),
        _model("critic", 0.412, 0.7, 823, 0.55),
        _model("uniform", 0.35, 0.65, 700, 0.56),
        _model("ntp", 0.3, 0.6, 600, 0.57),
    ],
)
CURVES = {
    "training loss": {"critic": [(0, 1.0), (10, 0.8), (20, 0.6)], "uniform": [(0, 1.0), (10, 0.9)]},
    "critic AUC": {"val": [(100, 0.8), (200, 0.9)]},
}
VIEW = '<!DOCTYPE html><html><body data-mode="delta"><p title="a &amp; b">x = "1" & y < 2</p></body></html>'


class _Collector(HTMLParser):
    """Collects the srcdoc of every iframe and every <script> start tag (the parser unescapes attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.srcdocs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.srcdocs.append(dict(attrs)["srcdoc"])
        if tag == "script":
            self.scripts += 1


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def test_curve_png_is_a_png_and_refuses_all_empty_series():
    png = curve_png({"a": [(0, 1.0), (1, 0.5)], "empty": []}, "loss", "loss")
    assert png.startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError):
        curve_png({"a": [], "b": []}, "loss", "loss")


def test_markdown_table_one_row_per_model_with_formatted_numbers():
    text = markdown_table(SUMMARY)
    lines = text.strip().splitlines()
    assert lines[0] == "tiny-code test split: 200 problems, n = 10 samples each at temperature 0.8."
    table = [line for line in lines if line.startswith("|")]
    header, rows = table[0], table[2:]
    assert "pass@1" in header and "pass@10" in header
    assert [row.split("|")[1].strip() for row in rows] == ["pretrained", "critic", "uniform", "ntp"]
    critic_row = rows[1].split("|")[1:-1]
    assert [cell.strip() for cell in critic_row] == ["critic", "0.412", "0.700", "823/2000", "0.500", "0.900", "0.550",
                                                     "0.123", "0.850"]  # fmt: skip
    assert [cell.strip() for cell in rows[0].split("|")[-4:-1]] == ["-", "-", "-"]  # the pretrained model did not train


def test_render_report_embeds_charts_views_and_escapes_the_data():
    summary = copy.deepcopy(SUMMARY)
    summary.models[3].name = "<script>alert(1)</script>"
    views = [("critic <script>view</script>", VIEW), ("uniform", VIEW)]
    page = render_report(summary, CURVES, views)

    assert page.count('<img class="chart" src="data:image/png;base64,') == len(CURVES)
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first).startswith(PNG_SIGNATURE)
    assert page.count("<iframe") == len(views)
    assert html.escape("critic <script>view</script>") in page
    assert html.escape("<script>alert(1)</script>") in page
    for number in ("0.934", "0.917", "12.3", "0.1200", "0.0100"):
        assert number in page

    parsed = _parse(page)
    assert parsed.scripts == 0  # nothing from the data became a tag
    assert parsed.srcdocs == [VIEW, VIEW]  # the pages survived the attribute whole


def test_render_report_survives_null_critic_numbers_and_empty_curves():
    summary = copy.deepcopy(SUMMARY)
    summary.critic = dataclasses.replace(summary.critic, val_auc=None, test_auc=None, delta_ratio=None)
    page = render_report(summary, {"empty": {"a": []}}, [])
    assert "<img" not in page and "No points recorded" in page
    assert "<iframe" not in page


def test_write_report_writes_both_files_atomically(tmp_path):
    folder = tmp_path / "demo"
    path = write_report(SUMMARY, CURVES, [("critic", VIEW)], folder)
    assert path == folder / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert (folder / "comparison.md").read_text(encoding="utf-8") == markdown_table(SUMMARY)
    assert sorted(p.name for p in folder.iterdir()) == ["comparison.md", "report.html"]


def test_summary_json_keeps_its_keys_and_their_order():
    # summary.json is read by people and scripts: the dataclasses must write exactly the keys it always had
    written = json.loads(SUMMARY.to_json())
    assert list(written) == ["recipe", "seconds", "pretrain", "score", "critic", "eval", "models"]
    assert list(written["pretrain"]) == ["cached", "steps", "loss"]
    assert list(written["score"]) == ["completions", "correct", "agreement"]
    assert list(written["critic"]) == ["val_auc", "test_auc", "n_test_correct", "n_test_incorrect",
                                       "mutated_abs_delta", "other_abs_delta", "delta_ratio", "n_mutated_tokens",
                                       "n_other_tokens"]  # fmt: skip
    assert list(written["eval"]) == ["benchmark", "split", "n_problems", "n_samples", "temperature", "k"]
    assert list(written["models"][1]) == ["name", "model", "pass_at_k", "n_problems", "n_passed", "n_samples_total",
                                          "head_ce", "head_top1", "train_loss", "weights"]  # fmt: skip
    assert written["models"][1]["pass_at_k"] == {"1": 0.412, "10": 0.7}
    assert written["seconds"] == SUMMARY.seconds and written["critic"]["delta_ratio"] == 12.3
