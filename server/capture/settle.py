"""Pure decisions of capture: when a span settles, whether an edit accepted a suggestion, and what
its outcome is called. Functions of their arguments and an explicit `now` (no clock inside).

Settling. A span is final (its text is y′) at the first of:
- `idle`: no edit changed its text for `settle_seconds`;
- `max_age`: it has been followed for `max_span_seconds`, still changing or not;
- `saved` / `closed`: its document was saved (if `settle_on_save`) or closed;
- `cursor_left`: the cursor, or an edit (an edit is where the user is), went more than
  `cursor_margin_lines` lines above or below the span;
- `deleted`: an edit removed all of it (tracking.py, rule 5);
- `shutdown` / `paused` / `restart`: the server stopped, capture was paused, or a restarted server
  found spans left by the previous run.

Acceptance inference. An insertion at a pending suggestion's position is an acceptance when it is the
suggestion, or a prefix of it that ends at a word boundary of the suggestion and is at least two
characters long (editors' word-by-word and line-by-line partial accepts insert that). A single typed
character that happens to match is typing, not an acceptance: the user is typing over the ghost text,
and that becomes a rejection capture whose y′ is what they typed (it costs little when they typed what
was suggested).
"""

from __future__ import annotations

from dataclasses import dataclass

from .tracking import Document, Span


@dataclass(frozen=True)
class SettleConfig:
    settle_seconds: float = 20.0  # idle time, in seconds without an edit inside the span, before it settles
    max_span_seconds: float = 600.0  # a span still being edited after this many seconds settles anyway
    cursor_margin_lines: int = 2  # the cursor or an edit this many lines beyond the span's lines: it left
    pending_seconds: float = 120.0  # a suggestion neither accepted nor typed over is dropped after this
    settle_on_save: bool = True  # saving the document settles its spans

    def __post_init__(self) -> None:
        if self.settle_seconds <= 0 or self.max_span_seconds <= 0 or self.pending_seconds <= 0:
            raise ValueError("settle_seconds, max_span_seconds and pending_seconds must be positive")
        if self.cursor_margin_lines < 0:
            raise ValueError("cursor_margin_lines must be >= 0")


def time_reason(span: Span, now: float, config: SettleConfig) -> str | None:
    """'idle' or 'max_age' when time alone settles `span` at `now`, else None."""
    if now - span.updated_at >= config.settle_seconds:
        return "idle"
    if now - span.created_at >= config.max_span_seconds:
        return "max_age"
    return None


def cursor_left(first_line: int, last_line: int, line: int, config: SettleConfig) -> bool:
    """Whether a cursor (or edit) on `line` is outside the span's lines widened by the margin."""
    m = config.cursor_margin_lines
    return line < first_line - m or line > last_line + m


def cursor_window(doc: Document, line: int, config: SettleConfig) -> tuple[int, int]:
    """`cursor_left` in offsets, for many spans at once: a span [s, e) has left the window of a
    cursor on `line` when s >= hi (below it) or e <= lo (above it). Two line lookups per event
    instead of two per span."""
    m = config.cursor_margin_lines
    line = min(max(line, 0), doc.line_count - 1)
    lo = doc.line_start(max(line - m, 0))
    below = line + m + 1
    hi = doc.line_start(below) if below < doc.line_count else len(doc) + 1
    return lo, hi


def outside(span: Span, window: tuple[int, int]) -> bool:
    lo, hi = window
    return span.start >= hi or span.end <= lo  # spans are never empty: their last character is end - 1


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def is_acceptance(remaining: str, inserted: str) -> bool:
    """Whether `inserted`, typed where the suggestion's not-yet-accepted part `remaining` starts, is
    an acceptance of all of it or of a word-bounded part of it (see the module docstring)."""
    if not inserted or not remaining.startswith(inserted):
        return False
    if inserted == remaining:
        return True
    if len(inserted) < 2:
        return False
    return not (_is_word_char(inserted[-1]) and _is_word_char(remaining[len(inserted)]))


def classify(span_kind: str, suggestion: str, accepted_text: str | None, final_text: str) -> str:
    """The outcome kind of a settled span.

    typed span -> 'rejected_typed'; accepted span -> 'deleted' when nothing is left, 'accepted' when
    y′ == y, 'partial' when only part of y was accepted and left as it was, else 'edited'.
    """
    if span_kind == "typed":
        return "rejected_typed"
    if final_text == "":
        return "deleted"
    if final_text == suggestion:
        return "accepted"
    if accepted_text is not None and accepted_text != suggestion and final_text == accepted_text:
        return "partial"
    return "edited"
