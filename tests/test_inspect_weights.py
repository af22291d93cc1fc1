"""``wmtp inspect-weights``: values, deltas and WMTP weights of a text, as table, JSON and HTML, on a tiny model."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_usage_error
from training_fixtures import scored_setup

from wmtp_cli.critic import ValueHead, ValueHeadConfig
from wmtp_cli.errors import UsageError
from wmtp_cli.inspection import find_sources, inspect_weights, latest_run
from wmtp_cli.inspection.locate import load_sources
from wmtp_cli.losses import IGNORE_INDEX
from wmtp_cli.losses.weights import critic_weights, token_deltas

PROMPT = "# f3(a): a plus 3\n"
# Non-ASCII characters make the tiny tokenizer fall back to byte tokens, which decode only together.
COMPLETION = "def f3(a):\n    return a + 3\n\t# é 中 ✓\n"
TEMPERATURE = 0.3


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A folder with the tiny model, scored data and a trained critic in runs/r/critic, and text files."""
    folder = scored_setup(tmp_path_factory.mktemp("inspect")).parent
    (folder / "completion.txt").write_text(COMPLETION, encoding="utf-8")
    (folder / "prompt.txt").write_text(PROMPT, encoding="utf-8")
    (folder / "joined.txt").write_text(PROMPT + COMPLETION, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def loaded(setup):
    """(model, tokenizer, value head, n_future) of the setup's critic."""
    return load_sources(find_sources(None, setup / "runs" / "r" / "critic"))


def json_rows(wmtp, setup: Path, *extra: str) -> list[dict]:
    critic = str(setup / "runs" / "r" / "critic")
    result = wmtp("inspect-weights", str(setup / "completion.txt"), "--critic", critic, "--format", "json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def expected_weights(rows: list[dict], t: int, n: int, temperature: float) -> list[float]:
    """softmax over k in K_t of delta_{t+k} / T, 0 outside K_t, from the JSON rows alone."""
    valid = [k for k in range(1, n + 1) if t + k < len(rows) and rows[t + k]["trained"]]
    if not valid:
        return [0.0] * n
    logits = {k: rows[t + k]["delta"] / temperature for k in valid}
    top = max(logits.values())
    exp = {k: math.exp(x - top) for k, x in logits.items()}
    total = sum(exp.values())
    return [exp[k] / total if k in exp else 0.0 for k in range(1, n + 1)]


def test_json_weights_are_the_softmax_of_the_json_deltas(wmtp, setup):
    rows = json_rows(wmtp, setup, "--prompt-file", str(setup / "prompt.txt"), "--temperature", str(TEMPERATURE))
    n = len(rows[0]["weights"])
    assert n == 4
    assert [r["position"] for r in rows] == list(range(len(rows)))
    assert rows[0]["delta"] is None and all(r["delta"] is not None for r in rows[1:])
    assert {"position", "token", "value", "delta", "weights"} <= rows[0].keys()
    prompt_rows = [r for r in rows if not r["trained"]]
    assert len(prompt_rows) > 1 and rows[: len(prompt_rows)] == prompt_rows  # BOS and the prompt, masked
    for t, row in enumerate(rows):
        assert row["weights"] == pytest.approx(expected_weights(rows, t, n, TEMPERATURE), abs=1e-6), t
    given = [r for r in rows if sum(r["weights"]) > 0]
    assert all(sum(r["weights"]) == pytest.approx(1) for r in given) and given[-1] is rows[-2]
    assert given[0]["position"] == len(prompt_rows) - n  # the first position with a completion token in reach
    # the critic's weights are not uniform, so the comparison above has teeth
    assert max(max(r["weights"]) for r in given) > 0.5
    # received: sum over k of w_{j-k,k}
    for j, row in enumerate(rows):
        received = sum(rows[j - k]["weights"][k - 1] for k in range(1, n + 1) if j - k >= 0)
        assert row["received"] == pytest.approx(received, abs=1e-6)


def test_library_weights_equal_critic_weights_exactly(loaded):
    from wmtp_cli.data.tokenization import split_prompt_completion

    model, tokenizer, head, _ = loaded
    result = inspect_weights(model, tokenizer, head, COMPLETION, prompt=PROMPT, temperature=TEMPERATURE)
    prompt_ids, completion_ids, _ = split_prompt_completion(tokenizer, [PROMPT], [COMPLETION])[0]
    ids = torch.tensor([prompt_ids + completion_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = IGNORE_INDEX
    with torch.no_grad():
        values = head(model.embed_and_trunk(ids)[0])
    expected = critic_weights(values, labels, model.config.n_future_tokens, TEMPERATURE)[0]
    assert torch.equal(torch.tensor([r.weights for r in result.rows]), expected)
    deltas = token_deltas(values)[0]
    assert torch.equal(torch.tensor([r.delta for r in result.rows[1:]]), deltas[1:])
    assert [r.token_id for r in result.rows] == ids[0].tolist()
    assert [r.trained for r in result.rows] == (labels[0] != IGNORE_INDEX).tolist()
    # each token's text is what it adds: together they give back the text, byte-fallback characters included
    assert "".join(r.text for r in result.rows) == PROMPT + COMPLETION
    assert result.summary.n_trained == len(completion_ids)
    assert len(result.summary.top_deltas) == 5
    fewer = inspect_weights(model, tokenizer, head, COMPLETION, n_future=2)  # model.n_future=2 in a recipe
    assert all(len(r.weights) == 2 for r in fewer.rows) and fewer.summary.n_future == 2


def test_prompt_chars_and_prompt_file_agree(wmtp, setup):
    from_file = json_rows(wmtp, setup, "--prompt-file", str(setup / "prompt.txt"))
    critic = str(setup / "runs" / "r" / "critic")
    result = wmtp("inspect-weights", str(setup / "joined.txt"), "--critic", critic, "--format", "json",
                  "--prompt-chars", str(len(PROMPT)))  # fmt: skip
    assert json.loads(result.stdout) == from_file
    assert sum(not r["trained"] for r in from_file) > 1


def test_default_run_is_the_latest_and_the_command_says_so(wmtp, setup, monkeypatch):
    monkeypatch.chdir(setup)
    result = wmtp("inspect-weights", "completion.txt", "--rows", "3")
    assert result.returncode == 0, result.stderr
    assert "using the latest run's critic: runs/r/critic" in result.stdout
    assert f"model {setup / 'model'}" in result.stdout
    assert "(the run's recipe)" in result.stdout  # the temperature training used
    # with JSON on stdout the note goes to stderr
    result = wmtp("inspect-weights", "completion.txt", "--format", "json")
    assert "using the latest run's critic" in result.stderr
    assert json.loads(result.stdout)[0]["position"] == 0


def _fake_head(folder: Path, mtime: float, model_folder: bool = False) -> Path:
    ValueHead(ValueHeadConfig(input_size=32, hidden_size=4)).save(folder)
    if model_folder:
        (folder / "config.json").write_text("{}")
    os.utime(folder / "value_head.safetensors", (mtime, mtime))
    return folder


def test_latest_run_lookup(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(UsageError, match="there is no runs folder"):
        latest_run(runs)
    (runs / "empty" / "critic").mkdir(parents=True)
    with pytest.raises(UsageError, match="no trained critic in any run under"):
        latest_run(runs)
    now = time.time()
    (runs / "old" / "critic").mkdir(parents=True)
    (runs / "old" / "critic" / "recipe.yaml").write_text("model:\n  path: some/model\n  n_future: 2\n")
    _fake_head(runs / "old" / "critic", now - 300)
    found = latest_run(runs)
    assert found.critic == runs / "old" / "critic" and found.model == "some/model" and found.n_future == 2
    assert found.temperature == 1.0 and "critic: " in found.found
    # a newer run wins; within it the fine-tuned final/ (its own model) comes before its critic/
    _fake_head(runs / "new" / "wmtp-critic" / "final", now - 200, model_folder=True)
    _fake_head(runs / "new" / "critic", now - 100)
    found = latest_run(runs)
    assert found.critic == runs / "new" / "wmtp-critic" / "final" and found.model == found.critic.as_posix()
    assert "fine-tuned model and its critic" in found.found
    # an older run's final/ loses to a newer run's critic/
    _fake_head(runs / "old" / "critic", now)
    assert latest_run(runs).critic == runs / "old" / "critic"


def test_named_sources(tmp_path):
    critic = _fake_head(tmp_path / "critic", time.time())
    with pytest.raises(UsageError, match="cannot tell which model"):
        find_sources(None, critic)
    assert find_sources("m", critic).model == "m"
    final = _fake_head(tmp_path / "final", time.time(), model_folder=True)
    assert find_sources(str(final), None).critic == final
    with pytest.raises(UsageError, match="has no value head beside it"):
        find_sources(str(tmp_path), None)
    with pytest.raises(UsageError, match="holds no value head"):
        find_sources("m", tmp_path)


def assert_one_line_error(result, *needles: str) -> None:
    assert_usage_error(result, *needles)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_inputs_give_one_line_and_exit_2(wmtp, setup, tmp_path, monkeypatch):
    critic = str(setup / "runs" / "r" / "critic")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    text = str(setup / "completion.txt")

    assert_one_line_error(wmtp("inspect-weights", str(empty), "--critic", critic), "is empty")
    assert_one_line_error(wmtp("inspect-weights", str(binary), "--critic", critic), "looks binary")
    assert_one_line_error(wmtp("inspect-weights", str(latin1), "--critic", critic), "is not UTF-8 text")
    assert_one_line_error(wmtp("inspect-weights", str(tmp_path / "nope.txt"), "--critic", critic), "does not exist")
    assert_one_line_error(wmtp("inspect-weights", text, "--critic", critic, "--prompt-chars", "1000"),
                          "leaves no completion")  # fmt: skip
    assert_one_line_error(
        wmtp("inspect-weights", text, "--critic", critic, "--prompt-chars", "3", "--prompt-file", text), "pass one"
    )
    assert_one_line_error(wmtp("inspect-weights", text, "--critic", critic, "--prompt-file", str(empty)), "is empty")

    wrong = tmp_path / "wrong-critic"
    ValueHead(ValueHeadConfig(input_size=48, hidden_size=4)).save(wrong)
    result = wmtp("inspect-weights", text, "--model", str(setup / "model"), "--critic", str(wrong))
    assert_one_line_error(result, "48-wide hidden states", "hidden size is 32")

    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert_one_line_error(wmtp("inspect-weights", text), "no latest run", "wmtp train-critic")
    assert_one_line_error(wmtp("inspect-weights", text, "--runs", str(tmp_path)), "no trained critic")


def test_table_shows_header_stats_and_the_truncation_note(wmtp, setup):
    critic = str(setup / "runs" / "r" / "critic")
    result = wmtp("inspect-weights", str(setup / "completion.txt"), "--critic", critic, "--rows", "5",
                  "--temperature", "0.5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("model", "critic", "temperature", "0.5 (given)", "mean weight per head", "h4", "weight entropy",
                   "largest |delta|", "V_t", "delta_t"):  # fmt: skip
        assert needle in out, needle
    n_rows = len(json_rows(wmtp, setup))
    assert f"{n_rows - 5} more rows: use --format json/html or --rows 0 for all" in " ".join(out.split())

    result = wmtp("inspect-weights", str(setup / "completion.txt"), "--critic", critic, "--rows", "0")
    assert "more rows" not in result.stdout
    assert "↵" in result.stdout and "→" in result.stdout and "·" in result.stdout  # whitespace made visible


def test_table_to_a_file(wmtp, setup, tmp_path):
    out = tmp_path / "table.txt"
    critic = str(setup / "runs" / "r" / "critic")
    result = wmtp("inspect-weights", str(setup / "completion.txt"), "--critic", critic, "--out", str(out))
    assert result.returncode == 0 and "wrote" in result.stdout
    text = out.read_text(encoding="utf-8")
    assert "mean weight per head" in text and "\x1b[" not in text


@pytest.fixture(scope="module")
def html_page(setup) -> Path:
    from wmtp_cli.cli.app import main  # the function-scoped wmtp fixture cannot serve a module fixture

    out = setup / "weights.html"
    critic = str(setup / "runs" / "r" / "critic")
    try:
        main(["inspect-weights", str(setup / "joined.txt"), "--critic", critic, "--prompt-chars", str(len(PROMPT)),
              "--format", "html", "--out", str(out)])  # fmt: skip
    except SystemExit as exc:
        assert not exc.code
    return out


def test_html_is_self_contained(html_page, wmtp, setup):
    page = html_page.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and " src=" not in page and "@import" not in page and "url(" not in page
    assert "<style>" in page and "<script>" in page and 'id="legend-delta"' in page and 'id="legend-weight"' in page
    n_rows = len(json_rows(wmtp, setup, "--prompt-file", str(setup / "prompt.txt")))
    assert page.count('<span class="t') == n_rows
    assert "weight received" in page.lower() and "&sum;" in page  # the legend says what "received" means


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")

COUNT_COLOURS = """
const [png, done] = arguments;
const image = new Image();
image.onload = () => {
  const canvas = document.createElement('canvas');
  canvas.width = image.width; canvas.height = image.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  const data = ctx.getImageData(0, 0, image.width, image.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  done(seen.size);
};
image.onerror = () => done(-1);
image.src = 'data:image/png;base64,' + png;
"""

BACKGROUNDS = "return [...document.querySelectorAll('.t:not(.p)')].map(e => getComputedStyle(e).backgroundColor);"


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                # no network: the page must not need it
                "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_html_in_headless_chromium(browser, html_page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(html_page.as_uri())
    tokens = browser.find_elements(By.CSS_SELECTOR, "#text .t")
    assert len(tokens) > 20 and all(t.is_displayed() for t in tokens[:20])
    assert "return" in browser.find_element(By.ID, "text").text
    assert browser.find_element(By.ID, "legend-delta").is_displayed()
    assert not browser.find_element(By.ID, "legend-weight").is_displayed()

    shot = tmp_path / "inspect-weights.png"
    assert browser.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    colours = browser.execute_async_script(COUNT_COLOURS, base64.b64encode(png).decode())
    assert colours > 20, colours  # text, legend gradient and token colours: far from a blank page

    by_delta = browser.execute_script(BACKGROUNDS)
    assert len(set(by_delta)) > 3  # tokens coloured by their own delta
    browser.find_element(By.ID, "mode-weight").click()
    by_weight = browser.execute_script(BACKGROUNDS)
    assert by_weight != by_delta and len(set(by_weight)) > 3
    assert browser.find_element(By.ID, "legend-weight").is_displayed()
    assert not browser.find_element(By.ID, "legend-delta").is_displayed()

    completion = browser.find_elements(By.CSS_SELECTOR, "#text .t:not(.p)")
    ActionChains(browser).move_to_element(completion[3]).perform()
    panel = browser.find_element(By.ID, "panel").text
    assert "V = " in panel and "delta = " in panel and "weights to t+1..t+4" in panel


def test_2000_tokens(wmtp, setup, loaded):
    """A text of 2,000 tokens, every row there; scripts/bench_inspect_weights.py times it (no timing here)."""
    _, tokenizer, _, _ = loaded
    text = ""
    while len(tokenizer(text)["input_ids"]) < 2000:
        text += COMPLETION
    long_file = setup / "long.txt"
    long_file.write_text(text, encoding="utf-8")
    critic = str(setup / "runs" / "r" / "critic")
    result = wmtp("inspect-weights", str(long_file), "--critic", critic, "--format", "json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) >= 2000
