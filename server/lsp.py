"""The language server: thin LSP handlers over `Completer` and the capture layer.

Handlers convert LSP params, call plain functions, and return lsprotocol types. The model runs on one
worker thread; a newer completion request cancels the one in flight, which stops at its next decoding
step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter

import server
from server import model_store, protocol, versions
from server.bandit import Bandit, warm_start
from server.trainer_process import TrainerProcess, TrainResult
from server.capture.session import Capture
from server.capture.settle import SettleConfig
from server.completion import Completer, CompletionConfig, Suggestion
from server.privacy import DEFAULT_EXCLUDES, Exclusions
from server.runtime import CancelToken, Runtime
from server.settings import Settings
from server.store.records import SuggestionRecord
from server.store.store import Store

log = logging.getLogger("redline")


class _InvalidMessage:
    """Stands in for a request whose params did not parse; it has been answered already."""

    jsonrpc = "invalid"


class RedlineProtocol(LanguageServerProtocol):
    """pygls answers nothing to a request whose params fail to parse; LSP wants an error reply."""

    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(
                    data["id"],
                    None,
                    types.ResponseError(
                        code=types.ErrorCodes.InvalidParams,
                        message=f"Invalid params for {data['method']}: {exc}. "
                        "Check the request against the LSP specification.",
                    ),
                )
                return _InvalidMessage()
            raise

    def handle_message(self, message):
        if isinstance(message, _InvalidMessage):
            return
        return super().handle_message(message)


class RedlineServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "redline",
            server.__version__,
            protocol_cls=RedlineProtocol,
            converter_factory=default_converter,
        )
        self.settings = Settings()
        self.cli_model_path: str | None = None
        self.runtime: Runtime | None = None
        self.completer: Completer | None = None
        self.state = "starting"
        self.state_message = "Loading the model"
        self.paused = False
        self.model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redline-model")
        self._inflight: CancelToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shown: dict[str, Suggestion] = {}  # suggestion id -> suggestion, recent ones only
        self.accepted: list[str] = []  # ids accepted through the command, in order
        self.counters = {"requests": 0, "cancelled": 0, "suggested": 0, "empty": 0}
        self.store: Store | None = None
        self.capture: Capture | None = None
        self.excluded = Exclusions(DEFAULT_EXCLUDES)
        self._ticker: asyncio.Task | None = None
        self.bandit: Bandit | None = None
        self.version = None  # the active versions.Version, if any
        self.trainer: TrainerProcess | None = None
        self.training: dict | None = None  # progress of a run, for the status payload
        self._progress_token: str | None = None
        self._pointer_mtime: float | None = None
        self._last_request_at = 0.0
        self._edits_since_train = 0

    def report_server_error(self, error, source):
        # Malformed messages are logged (the editor's output channel shows stderr); popping a
        # window at the user for every bad byte would be worse than the bug that sent it.
        log.error("%s: %s", source.__name__ if hasattr(source, "__name__") else source, error)

    # --- status ------------------------------------------------------------------------------------

    def status_payload(self) -> dict:
        return {
            "state": "paused" if self.paused and self.state == "ready" else self.state,
            "message": self.state_message,
            "model": self.runtime.version if self.runtime else None,
            "counters": dict(self.counters),
            "version": self.version_summary(),
            "training": self.training,
        }

    def version_summary(self) -> dict | None:
        if self.runtime is None:
            return None
        v = self.version
        summary = {
            "id": self.runtime.version,
            "policies": self.runtime.policies(),
            "trained_at": v.manifest.get("committed_at") if v else None,
            "edits": (v.read_json("edits.json", {}) or {}).get("counts") if v else None,
            "validation": {p: f.get("cost") for p, f in v.validation.items()} if v else {},
            # What the gate and the bandit's first picks rank by (training.evaluate.judge says why).
            "validation_log_loss": {p: f.get("nll") for p, f in v.validation.items()} if v else {},
        }
        if self.bandit is not None:
            snap = self.bandit.snapshot()
            summary["bandit"] = {"episodes": snap["episodes"], "arms": snap["arms"]}
        return summary

    def set_state(self, state: str, message: str = "") -> None:
        self.state, self.state_message = state, message
        payload = self.status_payload()

        def send() -> None:
            try:
                self.protocol.notify(protocol.NOTIFY_STATUS, payload)
            except Exception:  # the client may be gone while we shut down
                log.debug("status notification failed", exc_info=True)

        if self._loop is not None and threading.current_thread() is not threading.main_thread():
            self._loop.call_soon_threadsafe(send)
        else:
            send()

    # --- model -------------------------------------------------------------------------------------

    def load_model(self) -> None:
        """Runs on the model thread: load (or convert, once) the configured model."""
        try:
            folder = model_store.resolve_model_dir(self.settings.model_path, progress=log.info)
            self.set_state("starting", f"Loading {folder.name}")
            runtime = Runtime(folder)
            self.runtime = runtime
            self.activate_version()
            self.completer = Completer(
                runtime, CompletionConfig(max_tokens=self.settings.max_suggestion_tokens)
            )
            log.info("Model ready: %s (%.0f MB of weights)", folder, runtime.weights_bytes / 1e6)
            self.set_state("ready", f"{folder.name} ready")
        except model_store.ModelFolderError as exc:
            log.error("%s", exc)
            self.set_state("error", str(exc))
        except Exception as exc:
            log.error("Loading the model failed:\n%s", traceback.format_exc())
            self.set_state("error", f"Loading the model failed: {exc}. See the Redline output.")

    def activate_version(self) -> None:
        """Runs on the model thread: serve the active model version's policies, and start the Late
        bandit from its validation costs and the costs recorded since it went live."""
        runtime = self.runtime
        if runtime is None:
            return
        try:
            self._pointer_mtime = _mtime(versions.versions_root() / versions.POINTER)
            version = versions.active()
        except versions.VersionError as exc:
            log.error("Serving the base model: %s", exc)
            version = None
        if version is not None and Path(version.base_model).resolve() != runtime.model_dir.resolve():
            log.warning("Version %s was trained on %s, not %s: serving the base model",
                        version.id, version.base_model, runtime.model_dir)
            version = None
        try:
            served = runtime.use_version(version)
        except Exception as exc:
            log.error("Version %s could not be loaded (%s): serving the base model", version and version.id, exc)
            version, served = None, runtime.use_version(None)
        self.version = version
        order, priors = warm_start(version.validation if version else {}, served)
        observations = []
        if self.store is not None and version is not None:
            try:
                observations = [
                    (r["policy"], r["language"], r["cost"], r["model_version"])
                    for r in self.store.triples(since=version.manifest.get("committed_at"))
                ]
            except Exception:
                log.exception("reading recorded costs for the bandit failed")
        self.bandit = Bandit.from_observations(runtime.version, priors, observations, policies=order)
        if version is not None:
            log.info("Model version %s active: serving %s", version.id, ", ".join(served))

    def start_model_load(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.model_executor.submit(self.load_model)

    # --- capture -----------------------------------------------------------------------------------

    def start_capture(self) -> None:
        """Open the store and settle what a previous run left in flight. Failures only disable capture."""
        self.excluded = Exclusions(DEFAULT_EXCLUDES, self.settings.exclude)
        if not self.settings.capture:
            return
        try:
            self.store = Store(excluded=self.excluded)
        except Exception as exc:
            log.error("Capture is off: the database could not be opened: %s", exc)
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Error,
                    message=f"Redline cannot open its database ({exc}); suggestions work, but nothing "
                    "is recorded. Check the permissions of Redline's data folder.",
                )
            )
            return
        if self.store.recovered_from is not None:
            log.warning("%s", self.store.recovery_message)
            self.window_show_message(
                types.ShowMessageParams(type=types.MessageType.Warning, message=self.store.recovery_message)
            )
        pruned = self.store.prune(self.settings.retention_days)
        if pruned:
            log.info("Deleted %d records older than %g days (redline.retentionDays)", pruned, self.settings.retention_days)
        self.capture = Capture(
            self.store, SettleConfig(settle_seconds=self.settings.settle_seconds), excluded=self.excluded
        )
        self.capturing("recover")
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(1.0)
            self.capturing("tick")
            n += 1
            if n % 5 == 0:
                self.check_versions()
                self.maybe_auto_retrain()

    def check_versions(self) -> None:
        """A version activated from outside (`redline train`, `redline model rollback`): serve it."""
        if self.runtime is None:
            return
        mtime = _mtime(versions.versions_root() / versions.POINTER)
        if mtime != self._pointer_mtime:
            self._pointer_mtime = mtime
            self.model_executor.submit(self._switch_version)

    def _switch_version(self) -> None:
        self.activate_version()
        self.set_state(self.state, f"Model version {self.runtime.version} active")

    def maybe_auto_retrain(self) -> None:
        s = self.settings
        if not s.auto_retrain_edits or self.paused or self.runtime is None:
            return
        if self.trainer is not None and self.trainer.running:
            return
        idle = time.monotonic() - self._last_request_at >= s.auto_retrain_idle_seconds
        if idle and self._edits_since_train >= s.auto_retrain_edits:
            log.info("%d new settled edits and the editor is idle: retraining", self._edits_since_train)
            self.start_retrain(reason="automatic")

    # --- retraining ----------------------------------------------------------------------------------

    def start_retrain(self, reason: str = "requested") -> dict:
        if self.trainer is not None and self.trainer.running:
            return {"started": False, "message": "Retraining is already running."}
        if self.runtime is None:
            return {"started": False, "message": "The model is not loaded yet."}
        loop = self._loop or asyncio.get_running_loop()
        self.capturing("flush")
        token = f"redline-train-{int(time.time() * 1000)}"
        self._progress_token = token
        self.training = {"state": "running", "reason": reason, "message": "Starting", "percent": 0}

        def on_progress(event: dict) -> None:
            loop.call_soon_threadsafe(self._on_train_progress, token, event)

        def on_done(result: TrainResult) -> None:
            loop.call_soon_threadsafe(self._on_train_done, token, result)

        model_path = str(self.runtime.model_dir)
        extra = list(self.settings.trainer_args)
        if reason == "automatic" and self.runtime.version_id:
            # In the background, continue the active version on the edits it has not seen: minutes,
            # not the hour a full retrain takes on a laptop's CPU. "Retrain now" retrains on everything.
            extra = ["--warm-start", "--incremental", *extra]
        self.trainer = TrainerProcess(model_path, on_progress, on_done, extra)
        try:
            self.work_done_progress.create(token)
            self.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(title="Redline: retraining", message="Starting",
                                            percentage=0, cancellable=True),
            )
            self.work_done_progress.tokens[token].add_done_callback(
                lambda fut: fut.cancelled() and loop.call_soon_threadsafe(self.cancel_retrain)
            )
        except Exception:
            log.debug("work done progress unavailable", exc_info=True)
        self.trainer.start()
        self._edits_since_train = 0
        return {"started": True, "message": f"Retraining started ({reason})."}

    def cancel_retrain(self) -> bool:
        if self.trainer is None or not self.trainer.running:
            return False
        self.trainer.cancel()
        return True

    def _on_train_progress(self, token: str, event: dict) -> None:
        message = event.get("message") or event.get("stage", "")
        percent = event.get("percent")
        self.training = {**(self.training or {}), "message": message, "percent": percent,
                         "stage": event.get("stage"), "learner": event.get("learner")}
        try:
            self.work_done_progress.report(
                token, types.WorkDoneProgressReport(message=message, percentage=int(percent) if percent is not None else None)
            )
        except Exception:
            log.debug("progress report failed", exc_info=True)

    def _on_train_done(self, token: str, result: TrainResult) -> None:
        state = "done" if result.ok else "cancelled" if result.cancelled else "skipped" if result.skipped else "failed"
        self.training = {"state": state,
                         "message": result.message, "percent": 100 if result.ok else None}
        try:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=result.message))
        except Exception:
            log.debug("progress end failed", exc_info=True)
        if result.skipped or (result.cancelled and result.message):
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=result.message))
        elif not result.ok and not result.cancelled:
            log.error("%s\n%s", result.message, "\n".join(result.stderr_tail))
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=result.message))
        elif result.ok:
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=result.message))
        self.check_versions()

    def capturing(self, method: str, *args):
        """Call a capture method; an error there is logged and never reaches the editor's request."""
        if self.capture is None:
            return None
        try:
            result = getattr(self.capture, method)(*args)
        except Exception:
            log.error("capture.%s failed:\n%s", method, traceback.format_exc())
            return None
        if isinstance(result, list) and result:
            self.learn(result)
        return result

    def learn(self, outcomes: list) -> None:
        """Settled edits feed the Late bandit and count toward automatic retraining."""
        for outcome in outcomes:
            self._edits_since_train += 1
            shown = self.shown.get(outcome.suggestion_id)
            if shown is not None:
                policy, language, version = shown.policy, shown.context.language, shown.model_version
            elif self.store is not None:
                row = self.store.suggestion(outcome.suggestion_id) or {}
                policy, language, version = row.get("policy"), row.get("language"), row.get("model_version")
            else:
                continue
            if self.bandit is not None and version == self.bandit.version_id:
                self.bandit.update(policy, language, outcome.cost)

    def stop_capture(self, reason: str) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.capturing("settle_all", reason)

    # --- completion --------------------------------------------------------------------------------

    def document_text(self, uri: str) -> tuple[str, str]:
        """Text and language of an opened document. Never reads the disk."""
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            raise JsonRpcInvalidParams(
                f"Document {uri} is not open: send textDocument/didOpen before asking about it."
            )
        # Capture keeps its own copy with LSP's line breaks (pygls splits lines on more characters
        # than LSP does, e.g. form feeds, which misplaces incremental edits); prefer it.
        tracked = self.capture.document(uri) if self.capture is not None else None
        return (tracked.text if tracked is not None else doc.source), doc.language_id or ""

    async def suggest(self, uri: str, position: types.Position) -> Suggestion | None:
        text, language = self.document_text(uri)
        offset = position_to_offset(text, position)
        self.capturing("cursor", uri, position.line, position.character)
        if not self.settings.enabled or self.paused:
            return None
        if not self.settings.language_enabled(language):
            return None
        if self.excluded(uri):
            return None  # secrets live in excluded files: the model does not read them either
        if len(text) > self.settings.max_document_chars:
            log.info("No suggestions in %s: %d characters is over the limit", uri, len(text))
            return None
        window = text[max(0, offset - 4096) : offset + 1024]
        if "\x00" in window:
            log.info("No suggestions in %s: it looks like a binary file", uri)
            return None
        if self.completer is None:
            return None  # still loading, or failed (the status bar says which)
        previous, token = self._inflight, CancelToken()
        if previous is not None:
            previous.cancel()
        self._inflight = token
        loop = asyncio.get_running_loop()
        completer = self.completer
        policy = self.bandit.choose(language) if self.bandit is not None else "base"
        self._last_request_at = time.monotonic()
        try:
            if self.state == "ready":
                self.set_state("thinking", "")
            suggestion = await loop.run_in_executor(
                self.model_executor, completer.complete, uri, text, offset, language, token, policy
            )
        except asyncio.CancelledError:
            token.cancel()
            self.counters["cancelled"] += 1
            raise
        finally:
            if self._inflight is token:
                self._inflight = None
                if self.state == "thinking":
                    self.set_state("ready", "")
        self.counters["requests"] += 1
        if token.cancelled:
            self.counters["cancelled"] += 1
            return None
        if not suggestion.text:
            self.counters["empty"] += 1
            return None
        self.counters["suggested"] += 1
        self.remember(suggestion)
        record = SuggestionRecord(
            id=suggestion.id,
            uri=uri,
            suggestion=suggestion.text,
            prompt=suggestion.prompt,
            prefix=suggestion.context.prefix,
            suffix=suggestion.context.suffix,
            language=language,
            line=position.line,
            character=position.character,
            model_version=suggestion.model_version,
            policy=suggestion.policy,
            latency_ms=suggestion.latency_ms,
        )
        # Recorded just after the reply goes out: the write never delays the suggestion.
        loop.call_soon(self.capturing, "shown", record)
        return suggestion

    def remember(self, suggestion: Suggestion) -> None:
        self.shown[suggestion.id] = suggestion
        while len(self.shown) > 512:
            self.shown.pop(next(iter(self.shown)))

    def on_accepted(self, suggestion_id: str) -> bool:
        if suggestion_id not in self.shown:
            return False
        self.accepted.append(suggestion_id)
        self.capturing("accepted", suggestion_id)
        if self.completer is not None:
            self.completer.forget_last()
        return True


def position_to_offset(text: str, position: types.Position) -> int:
    """Python string index of an LSP position (UTF-16 code units); out of range is an error."""
    line, character = position.line, position.character
    if line < 0 or character < 0:
        raise JsonRpcInvalidParams(f"Position {line}:{character} is negative.")
    start = 0
    for _ in range(line):
        nl = _next_line_break(text, start)
        if nl is None:
            raise JsonRpcInvalidParams(
                f"Line {line} is past the end of the document: resend the document (didOpen/didChange)."
            )
        start = nl
    end = _line_end(text, start)
    units = 0
    index = start
    while units < character:
        if index >= end:
            raise JsonRpcInvalidParams(
                f"Character {character} is past the end of line {line}: positions are UTF-16 code units."
            )
        units += 2 if ord(text[index]) > 0xFFFF else 1
        index += 1
    if units != character:
        raise JsonRpcInvalidParams(f"Position {line}:{character} splits a surrogate pair.")
    return index


def _next_line_break(text: str, start: int) -> int | None:
    """Index just past the next LSP line break (\\n, \\r\\n or \\r) at or after `start`."""
    end = _line_end(text, start)
    if end >= len(text):
        return None
    return end + 2 if text.startswith("\r\n", end) else end + 1


def _line_end(text: str, start: int) -> int:
    n = text.find("\n", start)
    r = text.find("\r", start, n if n >= 0 else len(text))
    if r >= 0:
        return r
    return n if n >= 0 else len(text)


def make_server() -> RedlineServer:
    ls = RedlineServer()

    @ls.feature(types.INITIALIZE)
    def initialize(ls: RedlineServer, params: types.InitializeParams) -> None:
        ls.settings = ls.settings.merged(params.initialization_options)
        if ls.cli_model_path:  # the command line wins over the editor's setting
            ls.settings = ls.settings.merged({"modelPath": ls.cli_model_path})

    @ls.feature(types.INITIALIZED)
    def initialized(ls: RedlineServer, params: types.InitializedParams) -> None:
        ls.set_state("starting", "Loading the model")
        ls.start_capture()
        ls.start_model_load()

    @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: RedlineServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        ls.capturing("open", doc.uri, doc.text, doc.language_id)

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: RedlineServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.capturing("change", params.text_document.uri, params.content_changes)

    @ls.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: RedlineServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.capturing("save", params.text_document.uri)

    @ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: RedlineServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.capturing("close", params.text_document.uri)

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: RedlineServer, params: types.DidChangeConfigurationParams):
        old = ls.settings
        ls.settings = ls.settings.merged(params.settings)
        if ls.completer is not None:
            ls.completer.config.max_tokens = ls.settings.max_suggestion_tokens
        if ls.settings.model_path != old.model_path and ls.runtime is not None:
            ls.completer = None
            ls.set_state("starting", "Loading the new model")
            ls.model_executor.submit(ls.load_model)

    @ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: RedlineServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        suggestion = await ls.suggest(params.text_document.uri, params.position)
        if suggestion is None:
            return types.InlineCompletionList(items=[])
        return types.InlineCompletionList(
            items=[
                types.InlineCompletionItem(
                    insert_text=suggestion.text,
                    range=types.Range(start=params.position, end=params.position),
                    command=_accept_command(suggestion),
                )
            ]
        )

    @ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    async def completion(ls: RedlineServer, params: types.CompletionParams) -> types.CompletionList:
        suggestion = await ls.suggest(params.text_document.uri, params.position)
        if suggestion is None:
            return types.CompletionList(is_incomplete=True, items=[])
        # The editor filters items by the word before the cursor, so the edit replaces that word
        # with itself plus the suggestion.
        word = _word_before(suggestion.context.line_prefix)
        start = types.Position(
            line=params.position.line,
            character=params.position.character - len(word.encode("utf-16-le")) // 2,
        )
        first_line = suggestion.text.split("\n", 1)[0]
        item = types.CompletionItem(
            label=(word + first_line).strip()[:80] or suggestion.text.strip()[:80],
            kind=types.CompletionItemKind.Text,
            detail="Redline",
            documentation=types.MarkupContent(
                kind=types.MarkupKind.Markdown, value=f"```\n{suggestion.text}\n```"
            ),
            filter_text=word + suggestion.text,
            sort_text="0",
            text_edit=types.TextEdit(
                range=types.Range(start=start, end=params.position), new_text=word + suggestion.text
            ),
            command=_accept_command(suggestion),
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @ls.command(protocol.CMD_ACCEPTED)
    def accepted(ls: RedlineServer, *args):
        suggestion_id = args[0] if args else None
        if not isinstance(suggestion_id, str) or not suggestion_id:
            raise JsonRpcInvalidParams(f"{protocol.CMD_ACCEPTED} needs [suggestion_id: string].")
        return {"known": ls.on_accepted(suggestion_id)}

    @ls.command(protocol.CMD_PAUSE)
    def pause(ls: RedlineServer, *args):
        ls.paused = True
        if ls._inflight is not None:
            ls._inflight.cancel()
        ls.capturing("settle_all", "paused")
        ls.set_state(ls.state, "Paused")
        return ls.status_payload()

    @ls.command(protocol.CMD_RESUME)
    def resume(ls: RedlineServer, *args):
        ls.paused = False
        ls.set_state(ls.state, "")
        return ls.status_payload()

    @ls.command(protocol.CMD_RETRAIN)
    def retrain(ls: RedlineServer, *args):
        return ls.start_retrain()

    @ls.command(protocol.CMD_CANCEL_RETRAIN)
    def cancel_retrain(ls: RedlineServer, *args):
        return {"cancelled": ls.cancel_retrain()}

    @ls.command(protocol.CMD_STATUS)
    def status(ls: RedlineServer, *args):
        return ls.status_payload()

    @ls.feature(types.SHUTDOWN)
    def shutdown(ls: RedlineServer, params=None) -> None:
        if ls._inflight is not None:
            ls._inflight.cancel()
        ls.cancel_retrain()
        ls.stop_capture("shutdown")

    @ls.feature(types.EXIT)
    def exit_(ls: RedlineServer, *args) -> None:
        # pygls would wind down through sys.exit, then wait for its stdin reader thread, which only
        # returns when the editor closes the pipe: editors kill the server after a couple of seconds.
        # Everything worth keeping is committed by now (shutdown settled the spans), so leave at once.
        ls.stop_capture("shutdown")
        if ls.store is not None:
            ls.store.close()
        try:
            sys.stdout.flush()
        finally:
            os._exit(0 if ls.protocol._shutdown else 1)

    return ls


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _accept_command(suggestion: Suggestion) -> types.Command:
    return types.Command(
        title="Redline: suggestion accepted",
        command=protocol.CMD_ACCEPTED,
        arguments=[suggestion.id],
    )


def _word_before(line_prefix: str) -> str:
    i = len(line_prefix)
    while i > 0 and (line_prefix[i - 1].isalnum() or line_prefix[i - 1] == "_"):
        i -= 1
    return line_prefix[i:]


def serve_stdio(model_path: str | None = None) -> None:
    model_store.offline()
    ls = make_server()
    if model_path:
        ls.settings = ls.settings.merged({"modelPath": model_path})
        ls.cli_model_path = model_path
    ls.start_io()
