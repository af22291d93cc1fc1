"""From what a sandbox's server reported to a verdict, outside the sandbox.

Every rule for "passed" is here, and none reads anything the program wrote to a file:

- assert tests pass when the judge (a process the program cannot reach, see ``inside/judge_side.py``)
  reported every statement passed and then ``done``, within the time, memory and output limits;
- stdio tests pass when the program exited with status 0 (``exit()`` or ``sys.exit(0)`` after the
  output is a normal end) within the limits, with output that equals the expected output line by
  line once trailing white space and trailing blank lines are dropped. Expected outputs never enter
  the sandbox; the program's output reaches the executor through a pipe the server opened, capped.
"""

from __future__ import annotations

import signal

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


def stderr_tail(text: str) -> str:
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


def result(n_passed: int, n_tests: int, status: str, detail: str, seconds: float) -> ExecutionResult:
    passed = status == "passed"
    return ExecutionResult(passed, n_passed, n_tests, status, _clip(detail, DETAIL_CHARS), round(seconds, 4))


def judge_assert(summary: dict, n_tests: int, limit_s: float, max_output: int) -> ExecutionResult:
    """The verdict of assert tests from the server's summary: the judge's report and how the program ran."""
    seconds = summary["seconds"]
    if summary.get("compile_error"):
        return result(0, n_tests, "error", summary["compile_error"], seconds)
    run, report = summary["run"], summary["judge"]
    outcomes = {m[1]: (m[2], m[3]) for m in report if m[0] == "test" and len(m) == 4 and m[1] in range(n_tests)}
    n_passed = sum(status == "passed" for status, _ in outcomes.values())
    done = any(m[0] == "done" for m in report)
    progress = f"after {n_passed}/{n_tests} tests passed"
    stderr = stderr_tail(run["stderr"])
    if run["timeout"]:
        return result(n_passed, n_tests, "timeout", f"over the {limit_s:g} s time limit {progress}", seconds)
    if run["signal"] == signal.SIGXCPU:
        return result(n_passed, n_tests, "timeout", f"over the CPU time limit {progress}", seconds)
    if run["memory"] or stderr.endswith("MemoryError"):
        return result(n_passed, n_tests, "killed", f"memory limit {progress}", seconds)
    if run["output_over"]:
        return result(n_passed, n_tests, "killed", f"printed more than {max_output} bytes {progress}", seconds)
    first = report[0] if report else ("program_ended", "the judge reported nothing")
    if first[0] == "program_error":
        return result(0, n_tests, "error", f"{first[1]}: {first[2]}" if len(first) == 3 else "the program failed",
                      seconds)  # fmt: skip
    if first[0] == "program_exit":
        status = first[1] if len(first) == 2 else None
        if status == 0:
            return result(0, n_tests, "no_marker", "the program ended with status 0 before the tests ran", seconds)
        detail = f"the program exited with status {status} before the tests ran"
        return result(0, n_tests, "error", detail + (f": {stderr}" if stderr else ""), seconds)
    if not done:
        ended = next((m for m in report if m[0] == "program_ended" and len(m) == 3), ("program_ended", "", False))
        detail = f"the tests did not finish {progress}" + (f": {ended[1]}" if ended[1] else "")
        if ended[2]:  # it wrote what the protocol does not allow on its pipe to the judge
            return result(n_passed, n_tests, "error", detail, seconds)
        if run["signal"] is not None and run["signal"] != signal.SIGKILL:
            return result(n_passed, n_tests, "killed", f"killed by {signal_name(run['signal'])} {progress}", seconds)
        if run["exit"] == 0:  # it ended itself (sys.exit, os._exit) before the tests were through
            return result(n_passed, n_tests, "no_marker", detail, seconds)
        return result(n_passed, n_tests, "error", detail + (f": {stderr}" if stderr else ""), seconds)
    if n_passed == n_tests:
        return result(n_passed, n_tests, "passed", "", seconds)
    failures = [f"test {i}: {detail}" for i, (status, detail) in sorted(outcomes.items()) if status == "failed"]
    return result(n_passed, n_tests, "failed", failures[0] if failures else progress, seconds)


def judge_stdio(tests: list[dict], expected: list[str], limit_s: float, max_output: int, seconds: float,
                compile_error: str | None = None) -> ExecutionResult:  # fmt: skip
    """The verdict of stdin/stdout tests from each test's outcome (the tests after a timeout are not run)."""
    n_tests = len(expected)
    if compile_error:
        return result(0, n_tests, "error", compile_error, seconds)
    verdicts = [_stdio_verdict(i, test, expected[i], limit_s, max_output) for i, test in enumerate(tests)]
    n_passed = sum(status == "passed" for status, _ in verdicts)
    first_bad = next(((status, detail) for status, detail in verdicts if status != "passed"), None)
    if first_bad is None and len(verdicts) < n_tests:
        first_bad = ("error", f"only {len(verdicts)} of {n_tests} tests ran")
    if first_bad is None:
        return result(n_passed, n_tests, "passed", "", seconds)
    status, detail = first_bad
    if len(verdicts) < n_tests:
        detail += f"; {n_tests - len(verdicts)} later tests not run"
    return result(n_passed, n_tests, status, detail, seconds)


def _stdio_verdict(index: int, test: dict, expected: str, limit_s: float, max_output: int) -> tuple[str, str]:
    where = f"test {index}"
    stderr = stderr_tail(test["stderr"])
    if test["timeout"]:
        return "timeout", f"{where}: over the {limit_s:g} s time limit"
    if test["signal"] == signal.SIGXCPU:
        return "timeout", f"{where}: over the CPU time limit"
    if test["memory"] or stderr.endswith("MemoryError"):
        return "killed", f"{where}: memory limit"
    if test["output_over"]:
        return "killed", f"{where}: printed more than {max_output} bytes"
    if test["signal"] is not None:
        return "killed", f"{where}: killed by {signal_name(test['signal'])}"
    if test["exit"] != 0:
        return "error", f"{where}: exit status {test['exit']}" + (f": {stderr}" if stderr else "")
    actual = test["stdout"].encode("latin-1").decode("utf-8", "replace")
    if outputs_match(actual, expected):
        return "passed", ""
    return "failed", f"{where}: wrong answer: {first_difference(actual, expected)}"
