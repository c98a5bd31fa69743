"""The HumanEval sandbox: right answers pass, wrong ones fail, loops time out, and the program stays
inside its temporary folder, its memory and (where the machine allows) off the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.bench.contexts import load_contexts
from training.bench.sandbox import (
    SandboxConfig,
    check_completion,
    check_many,
    isolation,
    pass_at_1,
    program_for,
    run_program,
)

FAST = SandboxConfig(timeout_s=3)


@pytest.fixture(scope="module")
def problems():
    return load_contexts("humaneval", seed=None)


def test_program_layout():
    assert program_for("P", "C", "T", "f") == "PC\nT\ncheck(f)\n"


def test_canonical_solutions_pass(problems):
    sample = problems[::17][:10]
    results = check_many(sample, [p["canonical_solution"] for p in sample])
    assert [r.status for r in results] == ["passed"] * len(sample), [r.output for r in results]
    assert pass_at_1(results) == 1.0


@pytest.mark.slow
def test_all_164_canonical_solutions_pass(problems):
    results = check_many(problems, [p["canonical_solution"] for p in problems])
    failed = [(p["id"], r.status, r.output[-300:]) for p, r in zip(problems, results, strict=True) if not r.passed]
    assert not failed


def test_buggy_solutions_fail(problems):
    sample = problems[3::17][:10]
    results = check_many(sample, [p["buggy_solution"] for p in sample], FAST)
    assert sum(not r.passed for r in results) >= 8
    assert all(r.status in ("failed", "timeout") for r in results if not r.passed)
    failed = next(r for r in results if r.status == "failed")
    assert "Error" in failed.output  # the traceback's tail comes back


def test_an_infinite_loop_times_out(problems):
    result = check_completion(problems[0], "    while True:\n        pass\n", SandboxConfig(timeout_s=2))
    assert result.status == "timeout"
    assert result.duration_s < 6


def test_a_syntax_error_is_an_error_and_is_not_run(problems):
    result = check_completion(problems[0], "    return (\n")
    assert result.status == "error" and "SyntaxError" in result.output


def test_writes_stay_in_the_temporary_folder(tmp_path):
    marker = f"redline-sandbox-test-{os.getpid()}"
    code = (
        "import os\n"
        f"open({marker!r}, 'w').write('x')\n"
        f"print('CWD', os.getcwd(), os.path.abspath({marker!r}))\n"
        "try:\n"
        f"    open('/tmp/{marker}', 'w').write('x')\n"
        "except OSError as exc:\n"
        "    print('refused', exc)\n"
        "try:\n"
        f"    open({str(tmp_path / marker)!r}, 'w').write('x')\n"
        "except OSError as exc:\n"
        "    print('refused', exc)\n"
    )
    result = run_program(code, FAST)
    assert result.status == "passed", result.output
    line = next(line for line in result.output.splitlines() if line.startswith("CWD"))
    _, cwd, written = line.split()
    assert written == os.path.join(cwd, marker)  # a relative path lands in the working folder
    assert not Path(cwd, marker).exists()  # and it is gone afterwards
    iso = isolation(FAST)
    if iso["private_tmp"]:
        assert cwd == "/tmp/work"
        assert not Path("/tmp", marker).exists()  # /tmp inside was a private tmpfs
    if iso["user"] == "nobody":
        assert not (tmp_path / marker).exists()  # a folder it does not own is not writable
        assert "refused" in result.output


def test_no_network_where_a_namespace_is_available():
    iso = isolation(FAST)
    if not iso["network_namespace"]:
        pytest.skip("unshare cannot create a network namespace here: the sandbox has network access")
    code = (
        "import socket\n"
        "names = [n for _, n in socket.if_nameindex()]\n"
        "print('interfaces', names)\n"
        "s = socket.socket()\n"
        "s.settimeout(2)\n"
        "s.connect(('192.0.2.1', 80))\n"
    )
    result = run_program(code, FAST)
    assert result.status == "failed"
    assert "interfaces ['lo']" in result.output
    assert "unreachable" in result.output.lower()
    with_none = run_program("print(1)", SandboxConfig(timeout_s=3, network="none"))
    assert with_none.status == "passed"


def test_memory_stdin_and_processes_are_limited():
    big = run_program("x = bytearray(3 * 1024**3)\n", FAST)
    assert big.status == "failed" and "MemoryError" in big.output
    stdin = run_program("input()\n", FAST)
    assert stdin.status == "failed" and "EOFError" in stdin.output
    if isolation(FAST)["nproc_enforced"]:
        forks = run_program(
            "import os, time\n"
            "kids = []\n"
            "try:\n"
            "    for _ in range(500):\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n"
            "            time.sleep(5); os._exit(0)\n"
            "        kids.append(pid)\n"
            "except OSError as exc:\n"
            "    print('stopped at', len(kids), type(exc).__name__)\n",
            SandboxConfig(timeout_s=3, max_processes=16),
        )
        assert "stopped at" in forks.output, forks.output


def test_output_is_a_tail():
    result = run_program("print('a' * 10000)\nprint('END')\n", SandboxConfig(timeout_s=3, output_tail_chars=50))
    assert result.status == "passed"
    assert len(result.output) <= 50 and result.output.rstrip().endswith("END")
