"""The rows the store reads and writes, as plain dataclasses (no SQLite here)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

#: What became of an accepted or typed-over suggestion (outcomes.kind).
OUTCOME_KINDS = ("accepted", "edited", "partial", "rejected_typed", "deleted")
#: How a suggestion was bounded (suggestions.bound; the stop rules are in server.postprocess).
BOUNDS = ("editor", "answer", "function")
#: Why its span stopped being followed (outcomes.settle_reason).
SETTLE_REASONS = ("idle", "saved", "closed", "shutdown", "cursor_left", "deleted", "max_age", "restart", "paused")
#: How an acceptance became known (suggestions.accept_source).
ACCEPT_SOURCES = ("command", "inferred")


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class SuggestionRecord:
    """One suggestion shown to the user, with everything needed to train on it later."""

    uri: str
    suggestion: str  # y, the text shown
    prompt: str = ""  # the exact text the model saw
    prefix: str = ""  # document text before the cursor that went into the prompt
    suffix: str = ""  # document text after the cursor that went into the prompt
    language: str = ""  # VS Code language id
    line: int = 0  # LSP position of the suggestion: line ...
    character: int = 0  # ... and UTF-16 character
    model_version: str = ""
    policy: str = ""  # the arm that answered: base, sup, pref, cost, early, mixture ...
    latency_ms: float = 0.0
    bound: str = "editor"  # one of BOUNDS: how the suggestion was cut
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=time.time)  # unix seconds


@dataclass(frozen=True)
class Outcome:
    """A settled suggestion: y′ and its cost against y."""

    suggestion_id: str
    kind: str  # one of OUTCOME_KINDS
    final_text: str  # y′
    cost: float  # word-level edit cost (server.capture.cost.word_cost)
    char_cost: float  # character-level edit cost
    settled_at: float
    settle_reason: str  # one of SETTLE_REASONS


@dataclass
class SpanRecord:
    """A span still being followed, saved so that a restarted server can settle it."""

    suggestion_id: str
    uri: str
    start: int  # UTF-16 offset from the start of the document
    length: int  # UTF-16 code units
    text: str  # its text when saved
    kind: str  # 'accepted' | 'typed'
    mode: str = "code"  # 'code' | 'prose'
    units: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
