"""From what the harness reported (and the output files it left) to a verdict.

The harness only runs code; deciding happens here, outside the sandbox: expected outputs never
enter it, and every rule for "passed" is in one place:

- assert tests pass when the worker reported every statement passed, then its ``done`` line,
  and exited with status 0;
- stdio tests pass when the worker exited with status 0 (``exit()`` or ``sys.exit(0)`` after the
  output is a normal end), within the time limit, with at most ``max_output_bytes`` of output
  that equals the expected output line by line once trailing white space and trailing blank
  lines are dropped.
"""

from __future__ import annotations

import signal
from pathlib import Path

from wmtp_cli.execution.jobs import ExecutionResult

DETAIL_CHARS = 300


def normalize_output(text: str) -> list[str]:
    """Lines without trailing white space (``\\r`` included), trailing blank lines dropped."""
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: str, expected: str) -> bool:
    return normalize_output(actual) == normalize_output(expected)


def first_difference(actual: str, expected: str) -> str:
    got, want = normalize_output(actual), normalize_output(expected)
    for line, (a, b) in enumerate(zip(got, want, strict=False), 1):
        if a != b:
            return f"line {line}: expected {_clip(b, 60)!r}, got {_clip(a, 60)!r}"
    return f"{len(got)} lines of output, expected {len(want)}"


def read_capped(path: Path, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a file, and whether it held more (never reads more than that)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return b"", False
    return data[:limit], len(data) > limit


def stderr_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return _clip(" | ".join(lines[-3:]), DETAIL_CHARS, keep_end=True)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _clip(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "..." + text[-(limit - 3) :] if keep_end else text[: limit - 3] + "..."


def _result(n_passed: int, n_tests: int, status: str, detail: str, seconds: float) -> ExecutionResult:
    passed = status == "passed"
    return ExecutionResult(passed, n_passed, n_tests, status, _clip(detail, DETAIL_CHARS), round(seconds, 4))


def judge_missing_report(n_tests: int, returncode: int | None, timed_out: bool, workdir: Path, seconds: float):
    """The harness ended without its report: killed from inside, or the sandbox could not start."""
    if timed_out:
        return _result(0, n_tests, "timeout", "the sandbox did not finish within its overall time budget", seconds)
    tail = stderr_tail(workdir / "harness.err")
    if returncode is not None and (returncode < 0 or returncode > 128):
        number = -returncode if returncode < 0 else returncode - 128
        detail = f"the sandbox's supervisor was killed ({signal_name(number)})"
        return _result(0, n_tests, "killed", f"{detail}: {tail}" if tail else detail, seconds)
    detail = f"the sandbox ended without a report (exit status {returncode})"
    return _result(0, n_tests, "error", f"{detail}: {tail}" if tail else detail, seconds)


def judge_assert(summary: dict, n_tests: int, limit_s: float, workdir: Path, max_output: int, seconds: float):
    if summary.get("compile_error"):
        return _result(0, n_tests, "error", summary["compile_error"], seconds)
    tests, run = summary["tests"], summary["run"]
    n_passed = sum(test["status"] == "passed" for test in tests)
    failures = [f"test {i}: {t['detail']}" for i, t in enumerate(tests) if t["status"] == "failed"]
    progress = f"after {n_passed}/{n_tests} tests passed"
    stderr = stderr_tail(workdir / "stderr") or stderr_tail(workdir / "harness.err")
    if run["timeout"]:
        return _result(n_passed, n_tests, "timeout", f"over the {limit_s:g} s time limit {progress}", seconds)
    if run["signal"] == signal.SIGXCPU:
        return _result(n_passed, n_tests, "timeout", f"over the CPU time limit {progress}", seconds)
    if run["exception"] == "MemoryError":
        return _result(n_passed, n_tests, "killed", f"memory limit (MemoryError) {progress}", seconds)
    if read_capped(workdir / "stdout", max_output)[1]:
        return _result(n_passed, n_tests, "killed", f"printed more than {max_output} bytes {progress}", seconds)
    if run["signal"] is not None:
        return _result(n_passed, n_tests, "killed", f"killed by {signal_name(run['signal'])} {progress}", seconds)
    if run["program_error"] is not None:
        return _result(0, n_tests, "error", run["program_error"], seconds)
    if not run["done"]:
        if run["exit"] == 0:
            detail = f"the program ended with status 0 before the tests finished ({progress})"
            return _result(n_passed, n_tests, "no_marker", detail, seconds)
        detail = f"exit status {run['exit']} {progress}" + (f": {stderr}" if stderr else "")
        return _result(n_passed, n_tests, "error", detail, seconds)
    if run["exit"] != 0:
        return _result(n_passed, n_tests, "error", f"exit status {run['exit']} after the tests", seconds)
    if n_passed == n_tests:
        return _result(n_passed, n_tests, "passed", "", seconds)
    return _result(n_passed, n_tests, "failed", failures[0] if failures else progress, seconds)


def judge_stdio(
    summary: dict,
    expected: list[str],
    limit_s: float,
    workdir: Path,
    max_output: int,
    seconds: float,
):
    n_tests = len(expected)
    if summary.get("compile_error"):
        return _result(0, n_tests, "error", summary["compile_error"], seconds)
    verdicts = [
        _stdio_verdict(i, test, expected[i], limit_s, workdir, max_output) for i, test in enumerate(summary["tests"])
    ]
    n_passed = sum(status == "passed" for status, _ in verdicts)
    first_bad = next(((status, detail) for status, detail in verdicts if status != "passed"), None)
    if first_bad is None and len(verdicts) < n_tests:
        first_bad = ("error", f"only {len(verdicts)} of {n_tests} tests ran")
    if first_bad is None:
        return _result(n_passed, n_tests, "passed", "", seconds)
    status, detail = first_bad
    if len(verdicts) < n_tests:
        detail += f"; {n_tests - len(verdicts)} later tests not run"
    return _result(n_passed, n_tests, status, detail, seconds)


def _stdio_verdict(index: int, test: dict, expected: str, limit_s: float, workdir: Path, max_output: int):
    where = f"test {index}"
    if test["timeout"]:
        return "timeout", f"{where}: over the {limit_s:g} s time limit"
    if test["signal"] == signal.SIGXCPU:
        return "timeout", f"{where}: over the CPU time limit"
    if test["exception"] == "MemoryError":
        return "killed", f"{where}: memory limit (MemoryError)"
    output, too_long = read_capped(workdir / f"out_{index}", max_output)
    if too_long:
        return "killed", f"{where}: printed more than {max_output} bytes"
    if test["signal"] is not None:
        return "killed", f"{where}: killed by {signal_name(test['signal'])}"
    if test["exit"] != 0:
        stderr = stderr_tail(workdir / f"err_{index}") or stderr_tail(workdir / "harness.err")
        return "error", f"{where}: exit status {test['exit']}" + (f": {stderr}" if stderr else "")
    actual = output.decode("utf-8", "replace")
    if outputs_match(actual, expected):
        return "passed", ""
    return "failed", f"{where}: wrong answer: {first_difference(actual, expected)}"
