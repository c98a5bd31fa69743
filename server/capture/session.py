"""`Capture`: the language server feeds it editor events; it follows suggestions to their outcomes.

The server calls, from its event loop (one thread; Capture is not thread-safe):

    capture = Capture(store)                 # capture.recover() once at start-up
    capture.open(uri, text, language_id)     # textDocument/didOpen
    capture.change(uri, content_changes)     # textDocument/didChange (dicts or lsprotocol objects)
    capture.save(uri) / capture.close(uri)   # didSave / didClose
    capture.cursor(uri, line, character)     # whenever the server learns where the cursor is
    capture.shown(record)                    # a suggestion was returned to the editor
    capture.accepted(suggestion_id)          # the item's command (redline.accepted) ran
    capture.tick()                           # about once a second: idle spans settle, spans are saved
    capture.settle_all("shutdown")           # shutdown (or "paused" when the user pauses capture)

Each of these returns the outcomes it settled (already written to the store), for the policy
selector to learn from.

Lifecycle of a suggestion: `shown` makes it *pending* at its position (one per document; a newer one
replaces it). The next edit decides: an insertion there that `settle.is_acceptance` recognises starts
an *accepted* span; any other insertion there starts a *typed* span holding what the user typed in its
place, bounded to as many units (lines of code, sentences of prose) as the suggestion had; any edit
elsewhere drops it. The editor's accept command upgrades an inferred acceptance to source 'command',
or, when inference missed it (the user typed part of the suggestion first, or the editor replaced a
range), finds the suggestion's text at or near its position and starts the accepted span there. Spans
then follow edits (tracking.py) until `settle` decides they are final. A typed span that ends up
blank settles to nothing; it was not an answer to the suggestion.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..privacy import is_excluded
from ..store.records import Outcome, SpanRecord, SuggestionRecord
from .bound import bound, continuation, count_units, mode_for_language
from .cost import edit_cost
from .settle import SettleConfig, classify, cursor_window, is_acceptance, time_reason
from .tracking import Document, Edit, Span, TrackedDocument, default_join


@dataclass
class _Pending:
    suggestion_id: str
    offset: int
    text: str
    units: int
    created_at: float


@dataclass
class _Meta:
    uri: str
    suggestion: str  # y
    accepted_text: str | None  # what was accepted so far (None for typed spans)


class _Doc:
    __slots__ = ("uri", "mode", "tracked", "pending", "dirty")

    def __init__(self, uri: str, text: str, language_id: str) -> None:
        self.uri = uri
        self.mode = mode_for_language(language_id)
        self.tracked = TrackedDocument(text)
        self.pending: _Pending | None = None
        self.dirty: set[str] = set()


class Capture:
    """Follows suggestions through a session's edits (see the module docstring)."""

    def __init__(
        self,
        store: Any | None = None,
        config: SettleConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        excluded: Callable[[str], bool] = is_excluded,
    ) -> None:
        self.store = store  # a server.store.Store, or None to keep nothing (tests, benchmarks)
        self.config = config or SettleConfig()
        self.clock = clock
        self.excluded = excluded
        self._docs: dict[str, _Doc] = {}
        self._meta: dict[str, _Meta] = {}
        self._saved: set[str] = set()  # span ids with a row in the store
        self._grown: list[str] = []  # accepted spans whose partial acceptance grew during an edit

    # --- queries ----------------------------------------------------------------------------------

    def document(self, uri: str) -> Document | None:
        d = self._docs.get(uri)
        return d.tracked.doc if d else None

    def spans(self, uri: str | None = None) -> list[Span]:
        docs = [self._docs[uri]] if uri in self._docs else [] if uri else list(self._docs.values())
        return [s for d in docs for s in d.tracked.spans.values()]

    def span_text(self, suggestion_id: str) -> str | None:
        for d in self._docs.values():
            s = d.tracked.spans.get(suggestion_id)
            if s is not None:
                return d.tracked.span_text(s)
        return None

    def pending(self, uri: str) -> str | None:
        """The id of the suggestion waiting at its position in `uri`, if any."""
        d = self._docs.get(uri)
        return d.pending.suggestion_id if d and d.pending else None

    # --- documents --------------------------------------------------------------------------------

    def open(self, uri: str, text: str, language_id: str = "") -> None:
        if self.excluded(uri):
            return
        d = self._docs.get(uri)
        if d is None:
            self._docs[uri] = _Doc(uri, text, language_id)
        else:  # opened again without a close: keep its spans through the difference
            d.mode = mode_for_language(language_id) if language_id else d.mode
            self.change(uri, [{"text": text}])

    def change(self, uri: str, changes: Iterable[Any]) -> list[Outcome]:
        d = self._docs.get(uri)
        if d is None:
            return []
        now = self.clock()
        out: list[Outcome] = []
        for change in changes:
            out += self._edit(d, d.tracked.doc.apply_change(change), now)
        return out

    def save(self, uri: str) -> list[Outcome]:
        d = self._docs.get(uri)
        if d is None or not self.config.settle_on_save:
            return []
        return self._settle_doc(d, "saved")

    def close(self, uri: str) -> list[Outcome]:
        d = self._docs.pop(uri, None)
        return self._settle_doc(d, "closed") if d else []

    def cursor(self, uri: str, line: int, character: int) -> list[Outcome]:
        d = self._docs.get(uri)
        if d is None:
            return []
        doc = d.tracked.doc
        if d.pending and doc.offset_at(line, character) != d.pending.offset:
            d.pending = None
        return self._left_behind(d, line, self.clock())

    # --- suggestions ------------------------------------------------------------------------------

    def shown(self, record: SuggestionRecord) -> bool:
        """Record a suggestion returned to the editor and wait for what the user does with it.
        False when it was not recorded (excluded document, empty suggestion)."""
        if not record.suggestion or self.excluded(record.uri):
            return False
        if self.store is not None and not self.store.record_suggestion(record):
            return False
        d = self._docs.get(record.uri)
        if d is not None:
            d.pending = _Pending(
                record.id,
                d.tracked.doc.offset_at(record.line, record.character),
                record.suggestion,
                count_units(record.suggestion, d.mode),
                self.clock(),
            )
        return True

    def accepted(self, suggestion_id: str) -> bool:
        """The editor ran the accept command. True when the acceptance is being followed."""
        now = self.clock()
        for d in self._docs.values():
            span = d.tracked.spans.get(suggestion_id)
            meta = self._meta.get(suggestion_id)
            if span is not None and meta is not None:
                if span.kind == "accepted":
                    self._mark(suggestion_id, meta.accepted_text or meta.suggestion, "command", now)
                    return True
                # Typed through part of the suggestion, then accepted the rest: the suggestion is
                # now in the text where the typing began (or near it).
                y = meta.suggestion
                at = self._find(d.tracked.doc, span.start, y)
                if at is not None:
                    self._start(d, Span(suggestion_id, at, at + len(y), "accepted", d.mode, None, now, now), y, y)
                    self._mark(suggestion_id, y, "command", now)
                    return True
            p = d.pending
            if p is not None and p.suggestion_id == suggestion_id:
                at = self._find(d.tracked.doc, p.offset, p.text)
                if at is not None:
                    d.pending = None
                    self._start(d, Span(suggestion_id, at, at + len(p.text), "accepted", d.mode, None, now, now), p.text, p.text)
                    self._mark(suggestion_id, p.text, "command", now)
                    return True
        if self.store is not None:  # not followed, but the acceptance itself is worth keeping
            row = self.store.suggestion(suggestion_id)
            if row is not None:
                self.store.mark_accepted(suggestion_id, row["suggestion"], "command", now)
        return False

    # --- time and shutdown ------------------------------------------------------------------------

    def tick(self) -> list[Outcome]:
        """Settle spans that time settles, forget stale pending suggestions, save spans in flight."""
        now = self.clock()
        out: list[Outcome] = []
        for d in list(self._docs.values()):
            if d.pending and now - d.pending.created_at >= self.config.pending_seconds:
                d.pending = None
            for s in list(d.tracked.spans.values()):
                reason = time_reason(s, now, self.config)
                if reason:
                    out += self._settle(d, s, reason, now)
        self.flush()
        return out

    def flush(self) -> None:
        """Save every span changed since the last flush (so a restart can settle it)."""
        if self.store is None:
            for d in self._docs.values():
                d.dirty.clear()
            return
        records = []
        for d in self._docs.values():
            doc = d.tracked.doc
            for sid in d.dirty:
                s = d.tracked.spans.get(sid)
                if s is None:
                    continue
                text = d.tracked.span_text(s)
                records.append(
                    SpanRecord(sid, d.uri, doc.utf16_offset(s.start), doc.utf16_offset(s.end) - doc.utf16_offset(s.start),
                               text, s.kind, s.mode, s.units, s.created_at, s.updated_at)
                )  # fmt: skip
            d.dirty.clear()
        if records:
            self.store.save_spans(records)
            self._saved.update(r.suggestion_id for r in records)

    def settle_all(self, reason: str = "shutdown") -> list[Outcome]:
        """Settle every span now (server shutdown, or capture paused) and drop pending suggestions."""
        out: list[Outcome] = []
        for d in self._docs.values():
            d.pending = None
            out += self._settle_doc(d, reason)
        return out

    def recover(self) -> list[Outcome]:
        """Settle the spans a previous server left in the store, with their last saved text."""
        if self.store is None:
            return []
        out = []
        now = self.clock()
        for rec in self.store.open_spans():
            row = self.store.suggestion(rec.suggestion_id)
            if row is None:
                self.store.delete_span(rec.suggestion_id)
                continue
            if rec.kind == "typed":
                final = bound(rec.text, "prose" if rec.mode == "prose" else "code", rec.units or 1)
                if not final.strip():
                    self.store.delete_span(rec.suggestion_id)
                    continue
            else:
                final = rec.text
            kind = classify(rec.kind, row["suggestion"], row["accepted_text"], final)
            o = self.store.record_outcome(rec.suggestion_id, kind, final, "restart", now)
            if o is not None:
                out.append(o)
        return out

    # --- internals --------------------------------------------------------------------------------

    def _join(self, span: Span, head: str, inserted: str) -> int:
        """Tracking's join rule, plus: an accepted span whose suggestion was accepted only in part
        grows by a further partial (or the rest) accepted right at its end."""
        meta = self._meta.get(span.id)
        if meta is not None and span.kind == "accepted" and meta.accepted_text == head != meta.suggestion:
            if meta.suggestion.startswith(head) and is_acceptance(meta.suggestion[len(head) :], inserted):
                meta.accepted_text = head + inserted
                self._grown.append(span.id)
                return len(inserted)
        return default_join(span, head, inserted)

    def _edit(self, d: _Doc, edit: Edit, now: float) -> list[Outcome]:
        a, b, inserted = edit
        p, d.pending = d.pending, None  # any edit ends the wait; one at its position decides it
        new: Span | None = None
        if p is not None and a == p.offset and inserted:
            if is_acceptance(p.text, inserted):
                new = Span(p.suggestion_id, a, a + len(inserted), "accepted", d.mode, None, now, now)
            else:
                k = continuation("", inserted, d.mode, p.units)
                if k > 0:
                    new = Span(p.suggestion_id, a, a + k, "typed", d.mode, p.units, now, now)
        change = d.tracked.apply_edit(edit, now, self._join, applied=True)
        out: list[Outcome] = []
        for s in change.ended:
            out += self._settle(d, s, "deleted", now, removed=True)
        for s in change.touched:
            d.dirty.add(s.id)
        for sid in self._grown:
            meta = self._meta.get(sid)
            if meta is not None and meta.accepted_text is not None:
                self._mark(sid, meta.accepted_text, "inferred", now)
        self._grown.clear()
        if new is not None and p is not None:
            accepted = inserted if new.kind == "accepted" else None
            self._start(d, new, p.text, accepted)
            if accepted is not None:
                self._mark(new.id, accepted, "inferred", now)
        # An edit is where the user is: spans it left behind are final.
        out += self._left_behind(d, d.tracked.doc.line_of(a), now, keep=new)
        return out

    def _left_behind(self, d: _Doc, line: int, now: float, keep: Span | None = None) -> list[Outcome]:
        """Settle the spans that a cursor (or an edit) on `line` has left (settle.cursor_left)."""
        lo, hi = cursor_window(d.tracked.doc, line, self.config)
        gone = [s for s in d.tracked.spans.values() if (s.start >= hi or s.end <= lo) and s is not keep]  # outside()
        out: list[Outcome] = []
        for s in gone:
            out += self._settle(d, s, "cursor_left", now)
        return out

    def _start(self, d: _Doc, span: Span, suggestion: str, accepted_text: str | None) -> None:
        old = d.tracked.spans.get(span.id)
        if old is not None:
            d.tracked.remove(span.id)
        d.tracked.add(span)
        self._meta[span.id] = _Meta(d.uri, suggestion, accepted_text)
        d.dirty.add(span.id)

    def _mark(self, suggestion_id: str, text: str, source: str, now: float) -> None:
        if self.store is not None:
            self.store.mark_accepted(suggestion_id, text, source, now)

    @staticmethod
    def _find(doc: Document, offset: int, text: str) -> int | None:
        """Where `text` was inserted at or near `offset` (same neighbourhood), nearest first."""
        if doc.text.startswith(text, offset):
            return offset
        lo = doc.line_start(doc.line_of(offset))
        hi = min(len(doc), offset + 2 * len(text) + 200)
        best = None
        i = doc.text.find(text, lo, hi)
        while i >= 0:
            if best is None or abs(i - offset) < abs(best - offset):
                best = i
            i = doc.text.find(text, i + 1, hi)
        return best

    def _settle_doc(self, d: _Doc, reason: str) -> list[Outcome]:
        now = self.clock()
        out: list[Outcome] = []
        for s in list(d.tracked.spans.values()):
            out += self._settle(d, s, reason, now)
        return out

    def _settle(self, d: _Doc, span: Span, reason: str, now: float, removed: bool = False) -> list[Outcome]:
        text = "" if span.ended else d.tracked.span_text(span)
        if not removed:
            d.tracked.remove(span.id)
        d.dirty.discard(span.id)
        meta = self._meta.pop(span.id, None)
        if meta is None:
            return []
        if span.kind == "typed":
            final = bound(text, span.mode, span.units or 1)
            if not final.strip():
                if span.id in self._saved and self.store is not None:
                    self.store.delete_span(span.id)
                self._saved.discard(span.id)
                return []
        else:
            final = text
        self._saved.discard(span.id)
        kind = classify(span.kind, meta.suggestion, meta.accepted_text, final)
        if self.store is not None:
            o = self.store.record_outcome(span.id, kind, final, reason, now)
            return [o] if o is not None else []
        c = edit_cost(meta.suggestion, final)
        return [Outcome(span.id, kind, final, c.cost, c.char_cost, now, reason)]
