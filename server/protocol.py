"""Redline's wire protocol between the server and the VS Code extension.

`extension/src/protocol.ts` mirrors this module: change both together.
Everything here travels over standard LSP: commands through `workspace/executeCommand`,
custom notifications under the `redline/` prefix, and settings in `initializationOptions`
and `workspace/didChangeConfiguration` (section `redline`).
"""

from __future__ import annotations

# --- Commands the server executes (workspace/executeCommand) --------------------------------------

#: Sent by the editor when the user accepts an inline suggestion (it is the item's LSP `command`, run
#: after insertion). Arguments: [suggestion_id: str].
CMD_ACCEPTED = "redline.accepted"
#: Pause / resume suggestions and capture. No arguments. Returns the new status payload.
CMD_PAUSE = "redline.pause"
CMD_RESUME = "redline.resume"
#: Returns the status payload (see STATUS below) without changing anything.
CMD_STATUS = "redline.status"

#: Start retraining now (no arguments). Progress arrives as LSP work-done progress, cancellable.
#: Returns {"started": bool, "message": str}.
CMD_RETRAIN = "redline.retrain"
#: Stop a running retraining. No arguments.
CMD_CANCEL_RETRAIN = "redline.cancelRetrain"

SERVER_COMMANDS = [CMD_ACCEPTED, CMD_PAUSE, CMD_RESUME, CMD_STATUS, CMD_RETRAIN, CMD_CANCEL_RETRAIN]

# --- Notifications the server sends ----------------------------------------------------------------

#: Server -> client. Payload: {"state": one of STATES, "message": str, "model": str | None,
#: "version": {...} | None (the active model version: id, trained_at, edits, per-policy validation
#: cost and live bandit figures), "training": {...} | None (the latest retraining: "state" one of
#: running / done / failed / cancelled / skipped (too few edits yet), "message", "percent"),
#: "counters": {...}}.
NOTIFY_STATUS = "redline/status"
STATES = ("starting", "ready", "thinking", "paused", "error")

# --- Settings (section "redline"; camelCase as in VS Code) -----------------------------------------
# modelPath: str           local Hugging Face model folder; empty = the embedded default model
# enabled: bool            suggestions on/off
# languages: list[str]     language ids to suggest in; ["*"] = all
# maxSuggestionTokens: int upper bound on generated tokens per suggestion
SETTINGS_SECTION = "redline"
