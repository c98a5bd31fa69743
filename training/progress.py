"""Progress of a training run: tqdm bars for a person at a terminal, JSON lines for the language server.

Each JSON line is one object on stderr, flushed at once:

    {"type": "progress", "stage": "train", "learner": "sup", "step": 3, "of": 20, "percent": 15.0,
     "message": "Training SUP 3/20", "elapsed_s": 12.4}

`stage` is one of STAGES; `learner` is set for the stages that work on one learner (train, evaluate);
`step`/`of` count that stage's units (optimizer steps, policies evaluated) and may be null; extra keys
carry a stage's figures (edit counts, the gate's decision). The server forwards them as LSP work-done
progress (`message` and `percent`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO

STAGES = ("load", "filter", "split", "train", "evaluate", "mixture", "write", "gate", "done")
MODES = ("auto", "bars", "json", "both", "none")


class Progress:
    """Reports stages and steps; `mode` "auto" draws bars on a terminal and writes JSON otherwise."""

    def __init__(self, mode: str = "auto", stream: IO[str] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, not {mode!r}")
        self.stream = stream if stream is not None else sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.json = mode in ("json", "both") or (mode == "auto" and not tty)
        self.bars = mode in ("bars", "both") or (mode == "auto" and tty)
        self.started = time.monotonic()
        self._bar = None
        self._bar_key: tuple | None = None
        self.events: list[dict] = []  # everything emitted, for tests and the run summary

    def emit(
        self,
        stage: str,
        learner: str | None = None,
        step: int | None = None,
        of: int | None = None,
        message: str = "",
        **extra,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        percent = round(100.0 * step / of, 1) if step is not None and of else None
        event = {
            "type": "progress",
            "stage": stage,
            "learner": learner,
            "step": step,
            "of": of,
            "percent": percent,
            "message": message or _message(stage, learner, step, of),
            "elapsed_s": round(time.monotonic() - self.started, 1),
            **extra,
        }
        self.events.append(event)
        if self.json:
            self.stream.write(json.dumps(event, default=str) + "\n")
            self.stream.flush()
        if self.bars:
            self._draw(event)

    def steps(self, stage: str, learner: str | None = None):
        """A `progress(step, of)` callback for one learner's loop."""

        def report(step: int, of: int) -> None:
            self.emit(stage, learner, step=step, of=of)

        return report

    def _draw(self, event: dict) -> None:
        from tqdm import tqdm

        # One bar per learner's training; validation walks through the policies on one bar.
        key = (event["stage"], event["learner"] if event["stage"] == "train" else None)
        if event["of"] and event["step"] is not None:
            if key != self._bar_key:
                self._close_bar()
                desc = _message(event["stage"], key[1], None, None)
                self._bar = tqdm(total=event["of"], desc=desc, file=self.stream, leave=True, dynamic_ncols=True)
                self._bar_key = key
            self._bar.total = event["of"]
            self._bar.n = event["step"]
            self._bar.refresh()
        else:
            self._close_bar()
            from tqdm import tqdm as _t

            _t.write(event["message"], file=self.stream)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._bar_key = None, None

    def close(self) -> None:
        self._close_bar()


def _message(stage: str, learner: str | None, step: int | None, of: int | None) -> str:
    verb = {
        "load": "Loading edits",
        "filter": "Filtering edits",
        "split": "Splitting edits",
        "train": "Training",
        "evaluate": "Validating",
        "mixture": "Fitting the mixture",
        "write": "Writing the model version",
        "gate": "Checking the new version against the active one",
        "done": "Done",
    }[stage]
    text = f"{verb} {learner.upper()}" if learner else verb
    if step is not None and of:
        text += f" {step}/{of}"
    return text
