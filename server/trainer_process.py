"""Running the trainer as a separate, lower-priority process and following its progress.

The server never imports `training`: it starts `python -m training train --progress json` and reads
the JSON progress lines the trainer writes on stderr (training/progress.py). A crash or a kill leaves
the active model version as it was (the trainer writes versions atomically); the caller hears how the
run ended and why.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

EXIT_TOO_FEW = 3  # training/cli.py: nothing to train yet
EXIT_BUSY = 4  # another training run is in progress


@dataclass
class TrainResult:
    ok: bool
    returncode: int | None
    message: str  # one line for the editor
    cancelled: bool = False
    events: list[dict] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)  # the trainer's closing {"type": "result", ...} line
    skipped: bool = False  # nothing to train yet, or another run holds the lock: news, not an error


class TrainerProcess:
    """One training run. `start` returns at once; `on_progress` and `on_done` are called from a reader
    thread."""

    def __init__(
        self,
        model_path: str | None,
        on_progress: Callable[[dict], None],
        on_done: Callable[[TrainResult], None],
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_path = model_path
        self.on_progress = on_progress
        self.on_done = on_done
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self._cancelled = False
        self.started_at = 0.0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "training", "train", "--progress", "json", *self.extra_args]
        if self.model_path:
            cmd += ["--model", str(self.model_path)]
        return cmd

    def start(self) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        # No fixed thread count: the trainer takes the cores the machine leaves idle and gives one back
        # while the editor works (training.threads); it runs at a lower priority besides.
        root = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))

        def lower_priority() -> None:  # runs in the child: the editor stays responsive
            try:
                os.nice(10)
            except OSError:
                pass
            os.setsid()  # its own process group, so a cancel stops its workers too

        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, preexec_fn=lower_priority,
        )
        threading.Thread(target=self._read, name="redline-trainer", daemon=True).start()

    def cancel(self) -> None:
        """Stop the run: SIGTERM to its process group, SIGKILL after 5 s."""
        self._cancelled = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def kill_later() -> None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        threading.Thread(target=kill_later, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        events: list[dict] = []
        tail: list[str] = []
        result_line: dict = {}
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            event = None
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
            if isinstance(event, dict) and event.get("type") == "result":
                result_line = event
            elif isinstance(event, dict) and event.get("type") == "progress":
                events.append(event)
                try:
                    self.on_progress(event)
                except Exception:
                    log.exception("progress callback failed")
            elif line.strip():
                tail = (tail + [line])[-40:]
                log.info("trainer: %s", line)
        code = self.proc.wait()
        # The run's summary: one JSON object on stdout (small; read once the process has ended).
        for line in reversed((self.proc.stdout.read() if self.proc.stdout else "").splitlines()):
            try:
                summary = json.loads(line)
            except ValueError:
                continue
            if isinstance(summary, dict):
                result_line = {**summary, **result_line}
                break
        reason = result_line.get("reason")
        if self._cancelled:
            result = TrainResult(False, code, "Retraining cancelled; the active model is unchanged.", True, events, tail)
        elif code == 0:
            last = next((e for e in reversed(events) if e.get("stage") in ("gate", "done")), {})
            result = TrainResult(True, code, reason or last.get("message") or "Retraining finished.", False, events, tail)
        elif code in (EXIT_TOO_FEW, EXIT_BUSY) and reason:
            # Not a failure: nothing to learn from yet, or another run holds the lock.
            result = TrainResult(False, code, reason, False, events, tail, skipped=True)
        else:
            why = next((ln for ln in reversed(tail) if ln.strip()), f"exit code {code}")
            result = TrainResult(
                False, code,
                f"Retraining failed ({why[-200:]}); the active model is unchanged. See the Redline output.",
                False, events, tail,
            )
        result.result = result_line
        self.on_done(result)
