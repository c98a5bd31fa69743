"""Edits for training: loaded from the store, filtered, split by time, turned into trl rows.

An edit is one settled suggestion: the prompt x the model saw, its suggestion y, and the user's settled
text y′ (`final`). The stored prompt IS the rendered prompt (`server.prompt.render_prompt` at serving
time), so rows use it unchanged: a learner trains on exactly what the model read.

Filtering drops edits that would teach the wrong thing; every drop has a reason, counted in a
`FilterReport`:

- `deleted`: the user deleted the suggestion, or y′ is empty. Deleting a whole suggestion says "not
  this", not "say nothing here"; it is often frustration rather than a target.
- `unrelated`: the suggestion was accepted but y′ keeps almost nothing of it (character similarity
  below `min_similarity`): the user went on typing something else in its place, and the tracked span
  swallowed it. A rejection whose replacement was typed in (`rejected_typed`) is exempt: there the
  typed text is the target by definition.
- `duplicate`: the same prompt and y′ as a newer edit (the newest is kept).
- `excluded`: the document is excluded from capture (the store already refuses them; this double-checks
  an `excluded` flag if the schema has one, and the default exclusion patterns).
- `too_long`: y or y′ longer than `max_chars`: a paste or a reformat, not a suggestion's edit.

The split is by time: the newest edits validate, as they are the best guess of what the user wants
next. It is deterministic (sorted by creation time, then id).
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.request import pathname2url

from rapidfuzz.distance import Levenshtein

#: Outcome kinds where y′ grew out of the accepted suggestion (as opposed to text typed in its place).
ACCEPTED_KINDS = frozenset({"accepted", "edited", "partial"})
FILTER_REASONS = ("deleted", "unrelated", "duplicate", "excluded", "too_long")
LEARNER_NAMES = frozenset({"sup", "pref", "early", "cost", "mixture"})


@dataclass(frozen=True)
class Edit:
    """One settled suggestion: x = prompt, y = suggestion, y′ = final."""

    id: str
    prompt: str  # the exact text the model read
    suggestion: str  # y
    final: str  # y′, the user's settled text
    cost: float  # word-level edit cost of y against y′ (the paper's c)
    char_cost: float
    language: str = ""
    uri: str = ""
    created_at: float = 0.0  # unix seconds, when the suggestion was shown
    policy: str = ""  # the arm that answered
    model_version: str = ""
    kind: str = "edited"  # server.store.records.OUTCOME_KINDS
    prefix: str = ""  # document text before the cursor that went into the prompt
    suffix: str = ""  # document text after the cursor that went into the prompt
    settled_at: float = 0.0
    excluded: bool = False
    bound: str = "editor"  # how y was cut (server.store.records.BOUNDS); validation cuts the same way


class TooFewEdits(RuntimeError):
    """A learner (or the validation set) has too few edits to work with. The message says how many."""

    def __init__(self, arm: str, need: int, have: int, detail: str = "") -> None:
        self.arm, self.need, self.have = arm, need, have
        name = arm.upper() if arm in LEARNER_NAMES else arm.capitalize()
        msg = f"{name} needs at least {need} edits, have {have}"
        super().__init__(msg + (f" ({detail})" if detail else "") + ".")


# --- loading ------------------------------------------------------------------------------------------

_COLUMNS = (
    "s.id, s.prompt, s.suggestion, o.final_text, o.cost, o.char_cost, s.language, s.uri, s.created_at,"
    " s.policy, s.model_version, o.kind, s.prefix, s.suffix, o.settled_at"
)


def connect_readonly(db_path: Path) -> sqlite3.Connection:
    """A read-only connection: the trainer never writes the store (the server is its one writer)."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"No database at {db_path}: nothing has been captured yet.")
    conn = sqlite3.connect(f"file:{pathname2url(str(db_path.resolve()))}?mode=ro", uri=True, timeout=10)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def load_edits(db_path: Path, *, limit: int | None = None) -> list[Edit]:
    """Settled edits in time order (oldest first); with `limit`, the newest `limit` of them."""
    conn = connect_readonly(db_path)
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(suggestions)")}
        excluded = ", s.excluded" if "excluded" in cols else ", 0"
        bound = ", s.bound" if "bound" in cols else ", NULL"  # before m003 every suggestion was the editor's
        rows = conn.execute(
            f"SELECT {_COLUMNS}{excluded}{bound} FROM outcomes o JOIN suggestions s ON s.id = o.suggestion_id"
            " ORDER BY s.created_at, s.id"
        ).fetchall()
    finally:
        conn.close()
    edits = [
        Edit(
            id=r[0], prompt=r[1] or "", suggestion=r[2] or "", final=r[3] or "", cost=float(r[4] or 0.0),
            char_cost=float(r[5] or 0.0), language=r[6] or "", uri=r[7] or "", created_at=float(r[8] or 0.0),
            policy=r[9] or "", model_version=r[10] or "", kind=r[11] or "", prefix=r[12] or "",
            suffix=r[13] or "", settled_at=float(r[14] or 0.0), excluded=bool(r[15]), bound=r[16] or "editor",
        )  # fmt: skip
        for r in rows
    ]
    return edits[-limit:] if limit else edits


# --- filtering ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterConfig:
    min_similarity: float = 0.2  # accepted edits whose y′ keeps less of y than this (0..1) are unrelated
    max_chars: int = 4000  # y or y′ longer than this is a paste, not an edit
    check_exclusions: bool = True  # re-check documents against the default exclusion patterns


@dataclass
class FilterReport:
    total: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in FILTER_REASONS})
    dropped_ids: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "dropped": dict(self.dropped)}

    def __str__(self) -> str:
        parts = [f"{n} {reason}" for reason, n in self.dropped.items() if n]
        return f"{self.kept} of {self.total} edits kept" + (f"; left out: {', '.join(parts)}" if parts else "")


def similarity(a: str, b: str) -> float:
    """Character similarity in [0, 1]: 1 - Levenshtein distance / length of the longer text."""
    return Levenshtein.normalized_similarity(a, b)


def drop_reason(edit: Edit, cfg: FilterConfig = FilterConfig()) -> str | None:
    """Why `edit` must not be trained on (one of FILTER_REASONS), or None to keep it. Duplicates are
    found across edits by `filter_edits`."""
    if edit.excluded:
        return "excluded"
    if cfg.check_exclusions and edit.uri:
        from server.privacy import is_excluded

        if is_excluded(edit.uri):
            return "excluded"
    if edit.kind == "deleted" or not edit.final.strip():
        return "deleted"
    if len(edit.final) > cfg.max_chars or len(edit.suggestion) > cfg.max_chars:
        return "too_long"
    if edit.kind in ACCEPTED_KINDS and edit.suggestion.strip():
        if similarity(edit.suggestion, edit.final) < cfg.min_similarity:
            return "unrelated"
    return None


def filter_edits(edits: list[Edit], cfg: FilterConfig = FilterConfig()) -> tuple[list[Edit], FilterReport]:
    """The edits worth training on (order kept) and a report of what was left out and why."""
    report = FilterReport(total=len(edits))
    reasons: dict[str, str] = {}
    for e in edits:
        reason = drop_reason(e, cfg)
        if reason:
            reasons[e.id] = reason
    # Exact duplicates: the newest of each (prompt, y′) stays.
    seen: set[tuple[str, str]] = set()
    for e in sorted(edits, key=_time_key, reverse=True):
        if e.id in reasons:
            continue
        key = (e.prompt, e.final)
        if key in seen:
            reasons[e.id] = "duplicate"
        seen.add(key)
    kept = [e for e in edits if e.id not in reasons]
    for edit_id, reason in reasons.items():
        report.dropped[reason] += 1
        report.dropped_ids.setdefault(reason, []).append(edit_id)
    report.kept = len(kept)
    return kept, report


# --- splitting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.2  # the newest fifth validates
    min_val: int = 4  # at least this many validation edits (when there are twice as many edits)
    max_val: int = 200  # validation is evaluated by generation: bound its cost


def _time_key(e: Edit) -> tuple[float, str]:
    return (e.created_at, e.id)


def split_edits(edits: list[Edit], cfg: SplitConfig = SplitConfig()) -> tuple[list[Edit], list[Edit]]:
    """(train, validation): the newest edits validate. Deterministic. Validation takes
    ceil(val_fraction * n), at least `min_val` and at most `max_val`, and never more than half."""
    ordered = sorted(edits, key=_time_key)
    n = len(ordered)
    n_val = min(max(math.ceil(cfg.val_fraction * n), cfg.min_val), cfg.max_val, n // 2)
    return ordered[: n - n_val], ordered[n - n_val :]


# --- rows for trl ------------------------------------------------------------------------------------


def make_sft_rows(edits: list[Edit]) -> list[dict[str, str]]:
    """SUP rows: maximise log π(y′ | x)."""
    return [{"prompt": e.prompt, "completion": e.final} for e in edits]


def make_pref_rows(edits: list[Edit], *, include_ties: bool = False) -> list[dict[str, str]]:
    """PREF rows: y′ ≻ y. Edits with y′ == y carry no preference and are skipped unless
    `include_ties` (an SFT term in the same loss still learns from them)."""
    return [
        {"prompt": e.prompt, "chosen": e.final, "rejected": e.suggestion}
        for e in edits
        if include_ties or e.final != e.suggestion
    ]


def pair_count(edits: list[Edit]) -> int:
    """Edits that carry a preference (y′ differs from y)."""
    return sum(e.final != e.suggestion for e in edits)


def require(arm: str, need: int, have: int, detail: str = "") -> None:
    if have < need:
        raise TooFewEdits(arm, need, have, detail)


def edit_to_dict(e: Edit) -> dict:
    return asdict(e)


def kinds(edits: list[Edit]) -> dict[str, int]:
    return dict(Counter(e.kind for e in edits))
