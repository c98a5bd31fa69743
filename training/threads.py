"""How many CPU threads training uses, decided again as it runs.

A retrain on a 2-core laptop is twice as fast on two threads as on one, when nothing else wants the
CPU. When the editor is busy (the language server decoding a suggestion) a second training thread
fights it for the core: OpenMP threads spin while they wait, and on this project's 2-core machine a
step on two contended threads was six times slower than on one. So the trainer takes every core while
the rest of the machine is idle and gives one back as soon as something else runs, measured as CPU
time the rest of the machine used since the last look (all busy time, less this process's own).

`ThreadGovernor.tick()` is called between units of work (an optimizer step, a validation batch); it
must run on the thread that does the work, because OpenMP's thread count belongs to the calling
thread. A fixed count (`threads > 0`: `redline train -- --threads N`) turns it off.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadConfig:
    threads: int = 0  # > 0: always this many; 0: adapt between 1 and every core
    busy_cores: float = 0.3  # others using more than this share of a core count as a busy core
    interval_s: float = 2.0  # look at most this often


def _busy_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine spent busy, seconds this process used) since boot / start."""
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    busy = sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system


def _usable_cores() -> int:
    """Cores this process may run on (its affinity: a container or `taskset` may allow fewer than the
    machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class ThreadGovernor:
    def __init__(self, cfg: ThreadConfig = ThreadConfig(), cores: int | None = None) -> None:
        self.cfg = cfg
        self.cores = max(1, cores or _usable_cores())
        self.fixed = cfg.threads if cfg.threads > 0 else None
        self.current = 0
        self.history: list[tuple[float, int]] = []  # (others' load in cores, threads chosen)
        self._last: tuple[float, float, float] | None = None

    def start(self) -> int:
        """Pick the first count: every core unless the machine is busy right now."""
        self._last = (time.monotonic(), *_busy_seconds())
        if self.fixed:
            return self._set(self.fixed)
        time.sleep(0.2)
        return self.tick(force=True)

    def choose(self, others: float) -> int:
        """Threads for a machine where other processes keep `others` cores busy."""
        if self.fixed:
            return self.fixed
        busy = math.floor(others + 1 - self.cfg.busy_cores) if others > self.cfg.busy_cores else 0
        return max(1, self.cores - busy)

    def tick(self, force: bool = False) -> int:
        if self.fixed or self._last is None:
            return self.current or self._set(self.fixed or 1)
        now = time.monotonic()
        if not force and now - self._last[0] < self.cfg.interval_s:
            return self.current
        busy, own = _busy_seconds()
        wall = max(now - self._last[0], 1e-3)
        others = max(0.0, (busy - self._last[1]) - (own - self._last[2])) / wall
        self._last = (now, busy, own)
        n = self.choose(others)
        self.history.append((round(others, 2), n))
        return self._set(n)

    def _set(self, n: int) -> int:
        if n != self.current:
            import torch

            torch.set_num_threads(n)
            self.current = n
        return n


_active: ThreadGovernor | None = None


def activate(cfg: ThreadConfig = ThreadConfig()) -> ThreadGovernor:
    """Start governing this process's threads; `tick()` then adjusts them."""
    global _active
    _active = ThreadGovernor(cfg)
    _active.start()
    return _active


@contextlib.contextmanager
def governed(cfg: ThreadConfig = ThreadConfig()):
    """Govern threads inside the block; afterwards the count is what it was and nothing is governed
    (a process that trains more than once, such as the bench, keeps its own setting)."""
    global _active
    import torch

    before, previous = torch.get_num_threads(), _active
    try:
        yield activate(cfg)
    finally:
        _active = previous
        torch.set_num_threads(before)


def tick() -> int:
    """Between units of work: adjust the thread count if a governor is active (else do nothing)."""
    return _active.tick() if _active is not None else 0


def active() -> ThreadGovernor | None:
    return _active
