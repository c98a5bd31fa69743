"""pass@1 for HumanEval: run a completion against the problem's tests in a separate, limited process.

The program is `prompt + completion + "\\n" + test + f"\\ncheck({entry_point})"`, written to a fresh
temporary folder and run there by `python -I` (isolated mode: no user site-packages, no PYTHON*
environment variables, the script's folder not on sys.path).

What isolation this gives, exactly (`isolation()` reports it for this machine; `launcher` finds the
strongest of these that works, by trying each once):

- time: a wall-clock limit (`timeout_s`; the whole process group is killed) and RLIMIT_CPU;
- memory: RLIMIT_AS (address space, 1 GiB by default): a runaway allocation raises MemoryError;
- output and files: stdout and stderr go to a file in the working folder; RLIMIT_FSIZE caps every
  file written, RLIMIT_NOFILE the open files; no core dumps; stdin is /dev/null; the environment is
  only PATH, HOME, TMPDIR and LANG;
- as root, with util-linux `unshare`, `mount` and `setpriv` (the case on the development machine):
  the program runs in new network and mount namespaces — no network interface but a down loopback;
  a private, size-limited tmpfs over /tmp, /var/tmp, /run/lock and /dev/shm (the world-writable
  folders), the working folder bound at /tmp/work — and as the unprivileged user `nobody` (no groups,
  no capabilities, no_new_privs). It can then write only in the working folder and those private
  tmpfs, all gone when it ends; RLIMIT_NPROC binds (the kernel does not enforce it for root), so a
  fork bomb stops at `max_processes`;
- as root without `mount` working: network namespace and `nobody`, but /tmp and /var/tmp are the
  real, shared ones (world-writable);
- as an ordinary user: a network namespace only where unprivileged user namespaces are allowed
  (`unshare --net --map-root-user`); the program runs as that user and can write wherever the user
  can: the working folder only makes relative paths land in the temporary folder;
- with no `unshare` at all nothing stops the program from opening sockets: an environment variable
  is not isolation. `SandboxConfig(network="none")` refuses to run then.

This is containment for benchmark code written by a small model, not a security boundary against a
determined attacker: there is no seccomp filter, and the program can read whatever its user can.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("passed", "failed", "timeout", "error")
NOBODY = 65534


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 10.0  # wall clock for the whole program
    memory_mb: int = 1024  # RLIMIT_AS
    file_mb: int = 16  # RLIMIT_FSIZE: any one file, captured output included
    max_processes: int = 64  # RLIMIT_NPROC (binds only when not running as root)
    max_open_files: int = 64  # RLIMIT_NOFILE
    output_tail_chars: int = 2000  # how much of stdout+stderr to keep
    network: str = "auto"  # "auto": no network when unshare works; "none": require it; "allow": don't try
    drop_privileges: bool = True  # as root: run as `nobody` through setpriv
    python: str = sys.executable


@dataclass
class SandboxResult:
    status: str  # one of STATUSES
    returncode: int | None
    output: str  # the tail of stdout and stderr together
    duration_s: float
    isolation: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def program_for(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The text that is run: HumanEval's own layout."""
    return prompt + completion + "\n" + test + f"\ncheck({entry_point})\n"


# Run inside new mount and network namespaces (as root): a private tmpfs over /tmp and the other
# world-writable folders, the working folder bound at /tmp/work (reached through the mounting
# process's own cwd, since the tmpfs hides its path), then the command.
_MOUNT_SCRIPT = """set -e
mount -t tmpfs -o size=${REDLINE_TMPFS_MB}m,mode=1777 tmpfs /tmp
mkdir /tmp/work
mount --bind /proc/self/cwd /tmp/work
cd /tmp/work
for d in /var/tmp /run/lock /dev/shm; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=1m,mode=1777 tmpfs "$d"; fi
done
exec "$@"
"""
WORK_INSIDE = "/tmp/work"


@dataclass(frozen=True)
class Launcher:
    prefix: tuple[str, ...]  # put before `python -I program.py`
    network_namespace: bool
    private_tmp: bool  # the program sees the working folder at /tmp/work and a private /tmp
    user: str  # "nobody", "root" or "current user"
    drop: tuple[str, ...] = ()  # the setpriv part of `prefix`, if any


def _works(prefix: tuple[str, ...], env: dict[str, str] | None = None) -> bool:
    with tempfile.TemporaryDirectory(prefix="redline-probe-") as tmp:
        try:
            return subprocess.run([*prefix, "true"], capture_output=True, timeout=10, cwd=tmp, env=env).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


@functools.lru_cache(maxsize=8)
def launcher(network: str = "auto", drop_privileges: bool = True) -> Launcher:
    """The strongest isolation this machine allows, found by trying each way once."""
    unshare = shutil.which("unshare")
    root = os.geteuid() == 0
    drop: tuple[str, ...] = ()
    setpriv = shutil.which("setpriv")
    if root and drop_privileges and setpriv:
        candidate = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs", "--")
        if _works(candidate):
            drop = candidate
    user = "nobody" if drop else ("root" if root else "current user")
    if network != "allow" and unshare:
        if root and shutil.which("mount"):
            full = (unshare, "--net", "--mount", "--propagation", "private", "--", "sh", "-c", _MOUNT_SCRIPT, "sh")
            if _works((*full, *drop), env={"PATH": "/usr/bin:/bin", "REDLINE_TMPFS_MB": "16"}):
                return Launcher((*full, *drop), True, True, user, drop)
        net = (unshare, "--net") if root else (unshare, "--net", "--map-root-user")
        if _works((*net, *drop)):
            return Launcher((*net, *drop), True, False, user, drop)
    return Launcher(drop, False, False, user, drop)


def isolation(cfg: SandboxConfig = SandboxConfig()) -> dict[str, Any]:
    """What this machine gives: network namespace or not, private /tmp or not, the user, the limits."""
    la = launcher(cfg.network, cfg.drop_privileges)
    return {
        "network_namespace": la.network_namespace,
        "private_tmp": la.private_tmp,
        "user": la.user,
        "nproc_enforced": la.user != "root",
        "memory_mb": cfg.memory_mb,
        "file_mb": cfg.file_mb,
        "timeout_s": cfg.timeout_s,
    }


def _limit_values(cfg: SandboxConfig) -> list[tuple[str, int, int]]:
    """(prlimit option, resource constant, value) for each limit."""
    mb = 1024 * 1024
    return [
        ("--as", resource.RLIMIT_AS, cfg.memory_mb * mb),
        ("--cpu", resource.RLIMIT_CPU, int(cfg.timeout_s) + 1),
        ("--fsize", resource.RLIMIT_FSIZE, cfg.file_mb * mb),
        ("--nofile", resource.RLIMIT_NOFILE, cfg.max_open_files),
        ("--core", resource.RLIMIT_CORE, 0),
        ("--nproc", resource.RLIMIT_NPROC, cfg.max_processes),
    ]


def _limit_prefix(cfg: SandboxConfig) -> tuple[str, ...] | None:
    """util-linux `prlimit` sets the limits on the program alone, just before it starts. Setting them
    in `preexec_fn` instead is the fallback: it is not safe while other threads run (`check_many`)."""
    exe = shutil.which("prlimit")
    if exe is None:
        return None
    return (exe, *(f"{opt}={value}" for opt, _, value in _limit_values(cfg)), "--")


def _limits(cfg: SandboxConfig):
    def apply() -> None:
        for _, limit, value in _limit_values(cfg):
            try:
                resource.setrlimit(limit, (value, value))
            except (ValueError, OSError):
                pass  # a limit this kernel refuses is left as it was

    return apply


def _tail(path: Path, chars: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chars * 4))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


def run_program(code: str, cfg: SandboxConfig = SandboxConfig()) -> SandboxResult:
    """Run Python source in the sandbox. "passed": it exited with 0; "failed": it raised or exited
    otherwise; "timeout": past the time limit (wall clock or CPU); "error": it does not compile, or
    the sandbox could not run it."""
    iso = isolation(cfg)
    started = time.monotonic()
    try:
        compile(code, "<completion>", "exec")
    except (SyntaxError, ValueError) as exc:
        return SandboxResult("error", None, f"{type(exc).__name__}: {exc}", 0.0, iso)
    la = launcher(cfg.network, cfg.drop_privileges)
    if cfg.network == "none" and not la.network_namespace:
        return SandboxResult("error", None, "no network namespace is available here", 0.0, iso)
    with tempfile.TemporaryDirectory(prefix="redline-sandbox-") as tmp:
        folder = Path(tmp)
        script = folder / "program.py"
        script.write_text(code, encoding="utf-8")
        out_path = folder / "output.txt"
        if la.user == "nobody":
            os.chown(folder, NOBODY, NOBODY)
            os.chown(script, NOBODY, NOBODY)
        inside = Path(WORK_INSIDE) if la.private_tmp else folder
        limits = _limit_prefix(cfg)
        cmd = [*la.prefix, _sandbox_python(cfg.python, la), "-I", str(inside / script.name)]
        if limits:  # before setpriv, which must start Python while it still can reach any path
            at = cmd.index(la.drop[0]) if la.drop else len(la.prefix)
            cmd[at:at] = limits
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(inside),
            "TMPDIR": "/tmp" if la.private_tmp else tmp,
            "LANG": "C.UTF-8",
            "REDLINE_TMPFS_MB": str(cfg.file_mb),
        }
        with out_path.open("wb") as out:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=tmp,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own process group, killed as a whole
                    preexec_fn=None if limits else _limits(cfg),
                )
            except OSError as exc:
                return SandboxResult("error", None, f"could not start: {exc}", 0.0, iso)
            try:
                rc = proc.wait(timeout=cfg.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            # Children it left behind go with it, on time-out or not.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if timed_out:
                rc = proc.wait()
        duration = time.monotonic() - started
        output = _tail(out_path, cfg.output_tail_chars)
    # RLIMIT_CPU sends SIGXCPU at the limit (SIGKILL if it is still running past the hard limit).
    cpu_killed = rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and duration >= int(cfg.timeout_s))
    if timed_out or cpu_killed:
        return SandboxResult("timeout", rc, output, duration, iso)
    return SandboxResult("passed" if rc == 0 else "failed", rc, output, duration, iso)


def _sandbox_python(python: str, la) -> str:
    """An interpreter the sandboxed program can start. A checkout under /tmp is hidden by the private
    /tmp, and `nobody` cannot enter root's home (where pyenv keeps its Pythons): the system's own
    python3 runs HumanEval (standard library only) just as well."""
    hidden = la.private_tmp and os.path.realpath(python).startswith(("/tmp/", "/var/tmp/"))
    hidden = hidden or (la.private_tmp and os.path.abspath(python).startswith(("/tmp/", "/var/tmp/")))
    unreachable = la.user == "nobody" and not _world_executable(python)
    if hidden or unreachable:
        system = shutil.which("python3", path="/usr/bin:/bin")
        if system:
            return system
    return python


def _world_executable(path: str) -> bool:
    """Whether a user other than root can reach and run `path` (every folder on the way traversable)."""
    real = os.path.realpath(path)
    parts = Path(real).parents
    try:
        if not os.stat(real).st_mode & 0o001:
            return False
        return all(os.stat(p).st_mode & 0o001 for p in parts)
    except OSError:
        return False


def check_completion(
    problem: Mapping[str, Any], completion: str, cfg: SandboxConfig = SandboxConfig()
) -> SandboxResult:
    """Run one HumanEval problem's tests (`prompt`, `test`, `entry_point`) on a completion."""
    code = program_for(problem["prompt"], completion, problem["test"], problem["entry_point"])
    return run_program(code, cfg)


def check_many(
    problems: Iterable[Mapping[str, Any]],
    completions: Iterable[str],
    cfg: SandboxConfig = SandboxConfig(),
    workers: int = 2,
) -> list[SandboxResult]:
    """`check_completion` over pairs, `workers` at a time (each is its own process)."""
    pairs = list(zip(problems, completions, strict=True))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda pc: check_completion(pc[0], pc[1], cfg), pairs))


def pass_at_1(results: Iterable[SandboxResult]) -> float:
    """Share of problems whose single completion passed."""
    results = list(results)
    return sum(r.passed for r in results) / len(results) if results else 0.0
