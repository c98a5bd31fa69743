"""Document text in LSP coordinates, and the spans followed through a document's edits.

Positions. LSP positions are (line, character) where `character` counts UTF-16 code units and lines
end at `\\n`, `\\r\\n` or `\\r`. `Document` keeps the text as one Python `str` (indexed by code point)
plus an index of line starts, and converts a position by slicing its line only: an ASCII line needs no
conversion at all, any other line is measured by encoding just that line to UTF-16. An emoji is one
`str` index and two UTF-16 units. Positions past the end of a line clamp to the line's end (before its
line break), lines past the end clamp to the end of the document, as the LSP specification asks.

Speed. An edit splices the string (a C-level copy) and patches the line index lazily: the starts of
lines after the edit are not rewritten on every keystroke; one pending shift (`_d`, for lines from
`_p` on) is carried instead and the index is settled only between the last and the current edit's
lines. Typing in one place therefore costs O(log lines) per change, not O(lines).

Spans. A `Span` is a half-open range [start, end) of code-point offsets. Given an edit that replaces
[a, b) with text N, a span [s, e) becomes (the rule, in the order applied):

1. edit before the span (b < s, or b == s: a deletion or insertion that ends at the span's first
   character, including text typed right before it): the span shifts by len(N) - (b - a). Text typed
   just before a suggestion is context, not part of it.
2. edit after the span (a > e): nothing changes.
3. edit starting at the span's end (a == e): the span keeps its text and *continues* with the first
   k characters of N, where k comes from `join` (default `bound.continuation`): an accepted span
   continues its last line (code) or its unfinished sentence (prose); a line break, or a new sentence
   after a finished one, stays outside. Text the user typed in place of a suggestion (units=n)
   continues up to n units. Whatever the edit removed after e was never in the span.
4. edit overlapping the span's interior (a < e and b > s), including one that straddles a boundary:
   the part of the span inside [a, b) is removed, and N, all of it, becomes part of the span: the user
   replaced that part of the suggestion with N. The span becomes [min(s, a), max(e, b) + len(N) - (b - a)).
5. ...except a deletion (N empty) covering the whole span: the span ends (`ended = "deleted"`,
   its text is empty).

Full-document changes are turned into one edit by the common prefix and suffix of the old and new
text (`diff`); where that is ambiguous (typing "o" after "foo") the change is placed as late as the
common prefix allows, which is also where an editor's cursor would be.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .bound import Mode, continuation

_LINE_BREAK = re.compile(r"\r\n?|\n")


def _field(obj: Any, name: str) -> Any:
    """A field of an LSP object given as a dict (JSON) or as an attribute object (lsprotocol)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


class Edit(NamedTuple):
    """One replacement, in code-point offsets of the document *before* it: [start, end) -> text."""

    start: int
    end: int
    text: str

    @property
    def delta(self) -> int:
        return len(self.text) - (self.end - self.start)


def diff(old: str, new: str) -> Edit:
    """The single replacement turning `old` into `new`: common prefix first, then common suffix."""
    p = _common_prefix(old, new)
    q = _common_prefix_reversed(old, new, min(len(old), len(new)) - p)
    return Edit(p, len(old) - q, new[p : len(new) - q])


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, step = 0, 256
    while lo < n:
        hi = min(lo + step, n)
        if a[lo:hi] != b[lo:hi]:
            while hi - lo > 1:  # a[:lo] == b[:lo] and a[lo:hi] != b[lo:hi]
                mid = (lo + hi) // 2
                if a[lo:mid] == b[lo:mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        lo, step = hi, step * 2
    return n


def _common_prefix_reversed(a: str, b: str, limit: int) -> int:
    """Length of the common suffix of a and b, at most `limit`."""
    la, lb = len(a), len(b)
    lo, step = 0, 256
    while lo < limit:
        hi = min(lo + step, limit)
        if a[la - hi : la - lo] != b[lb - hi : lb - lo]:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
                    lo = mid
                else:
                    hi = mid
            return lo
        lo, step = hi, step * 2
    return limit


def _is_line_start(text: str, i: int) -> bool:
    c = text[i - 1]
    return c == "\n" or (c == "\r" and (i == len(text) or text[i] != "\n"))


class Document:
    """A text document addressed in LSP (line, UTF-16 character) positions or code-point offsets."""

    __slots__ = ("_text", "_starts", "_p", "_d")

    def __init__(self, text: str = "") -> None:
        self._text = text
        self._reindex()

    def _reindex(self) -> None:
        self._starts = [0] + [m.end() for m in _LINE_BREAK.finditer(self._text)]
        self._p = len(self._starts)  # starts[i] is exact for i < _p ...
        self._d = 0  # ... and starts[i] + _d for i >= _p

    @property
    def text(self) -> str:
        return self._text

    def __len__(self) -> int:
        return len(self._text)

    @property
    def line_count(self) -> int:
        return len(self._starts)

    # --- lines ------------------------------------------------------------------------------------

    def line_start(self, line: int) -> int:
        """Offset of the first character of `line` (0-based; must exist)."""
        s = self._starts[line]
        return s + self._d if line >= self._p else s

    def line_end(self, line: int) -> int:
        """Offset just past the last character of `line`, before its line break."""
        if line + 1 >= len(self._starts):
            return len(self._text)
        nxt = self.line_start(line + 1)
        if self._text[nxt - 1] == "\n" and nxt >= 2 and self._text[nxt - 2] == "\r":
            return nxt - 2
        return nxt - 1

    def line_of(self, offset: int) -> int:
        """The line holding code-point `offset` (an offset on a line break belongs to that line)."""
        starts, p, d = self._starts, self._p, self._d
        if p < len(starts) and offset >= starts[p] + d:
            return bisect_right(starts, offset - d, p) - 1
        return bisect_right(starts, offset, 0, p) - 1

    def line_text(self, line: int) -> str:
        return self._text[self.line_start(line) : self.line_end(line)]

    # --- positions --------------------------------------------------------------------------------

    def offset_at(self, line: int, character: int) -> int:
        """Code-point offset of the LSP position (line, UTF-16 character), clamped as LSP says."""
        if line >= len(self._starts):
            return len(self._text)
        if line < 0:
            return 0
        start = self.line_start(line)
        if character <= 0:
            return start
        end = self.line_end(line)
        seg = self._text[start:end]
        if seg.isascii():
            return start + min(character, len(seg))
        units = seg.encode("utf-16-le")
        if 2 * character >= len(units):
            return end
        # A character that falls inside a surrogate pair rounds down to the pair's start.
        return start + len(units[: 2 * character].decode("utf-16-le", "ignore"))

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP (line, UTF-16 character) of a code-point offset."""
        offset = min(max(offset, 0), len(self._text))
        line = self.line_of(offset)
        start = self.line_start(line)
        return line, utf16_len(self._text[start:offset])

    def utf16_offset(self, offset: int) -> int:
        """UTF-16 offset from the start of the document of a code-point offset (O(offset))."""
        return utf16_len(self._text[:offset])

    def offset_from_utf16(self, units: int) -> int:
        """Code-point offset of a UTF-16 offset from the start of the document (O(document))."""
        head = self._text[:units]
        if head.isascii():
            return len(head)
        return len(self._text.encode("utf-16-le")[: 2 * units].decode("utf-16-le", "ignore"))

    # --- edits ------------------------------------------------------------------------------------

    def apply_change(self, change: Any) -> Edit:
        """Apply one LSP TextDocumentContentChangeEvent (dict or object): incremental when it has a
        `range`, else the full new text. Returns the edit in offsets of the text before it."""
        text = _field(change, "text") or ""
        rng = _field(change, "range")
        if rng is None:
            return self.set_text(text)
        start, end = _field(rng, "start"), _field(rng, "end")
        a = self.offset_at(_field(start, "line"), _field(start, "character"))
        b = self.offset_at(_field(end, "line"), _field(end, "character"))
        if b < a:
            a, b = b, a
        return self.replace(a, b, text)

    def set_text(self, text: str) -> Edit:
        """Replace the whole text (full-document sync), as the minimal single edit."""
        edit = diff(self._text, text)
        if edit.start == edit.end and not edit.text:
            return edit
        return self.replace(*edit)

    def replace(self, start: int, end: int, text: str) -> Edit:
        """Replace code points [start, end) with `text` and patch the line index."""
        old = self._text
        a = min(max(start, 0), len(old))
        b = min(max(end, a), len(old))
        new = old[:a] + text + old[b:]
        starts = self._starts
        ls, le = self.line_of(a), self.line_of(b)
        # Settle the pending shift so that starts[0..le] are exact and starts[le+1..] carry _d.
        p, d = self._p, self._d
        if p < le + 1:
            starts[p : le + 1] = [s + d for s in starts[p : le + 1]]
        elif p > le + 1 and d:
            starts[le + 1 : p] = [s - d for s in starts[le + 1 : p]]
        # Line starts inside [a, b] may change (a line break may join or split a "\r\n"); the others
        # before the edit stay, the ones after it shift.
        k0 = ls if (ls >= 1 and starts[ls] == a) else ls + 1
        hi = a + len(text)
        found = [
            m.end()
            for m in _LINE_BREAK.finditer(new, max(a - 1, 0), min(hi + 1, len(new)))
        ]
        region = [i for i in found if a <= i <= hi and i >= 1 and _is_line_start(new, i)]
        starts[k0 : le + 1] = region
        self._p = k0 + len(region)
        self._d = d + len(text) - (b - a)
        if self._p >= len(starts):
            self._p, self._d = len(starts), 0
        self._text = new
        return Edit(a, b, text)


# --- spans -----------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Span:
    """Text followed through edits: code points [start, end) of its document."""

    id: str  # the suggestion's id
    start: int
    end: int
    kind: str = "accepted"  # 'accepted' (the suggestion, inserted) | 'typed' (the user's own, in its place)
    mode: Mode = "code"
    units: int | None = None  # None: continue the last unit at the end; n: hold up to n units
    created_at: float = 0.0
    updated_at: float = 0.0  # the last edit that changed the span's text
    ended: str | None = None  # 'deleted' when an edit removed all of it


#: join(span, span_text, inserted) -> how many leading characters of `inserted` join the span.
JoinRule = Callable[[Span, str, str], int]


def default_join(span: Span, head: str, inserted: str) -> int:
    return continuation(head, inserted, span.mode, span.units)


class Change(NamedTuple):
    edit: Edit
    touched: list[Span]  # spans whose text the edit changed (their updated_at is now)
    ended: list[Span]  # spans the edit deleted entirely (removed from the tracker)


class TrackedDocument:
    """A `Document` and the spans followed in it."""

    __slots__ = ("doc", "spans")

    def __init__(self, text: str = "") -> None:
        self.doc = Document(text)
        self.spans: dict[str, Span] = {}

    @property
    def text(self) -> str:
        return self.doc.text

    def add(self, span: Span) -> Span:
        if not 0 <= span.start < span.end <= len(self.doc):
            raise ValueError(f"span [{span.start}, {span.end}) is empty or outside the document")
        self.spans[span.id] = span
        return span

    def remove(self, span_id: str) -> Span | None:
        return self.spans.pop(span_id, None)

    def span_text(self, span: Span) -> str:
        return self.doc.text[span.start : span.end]

    def apply(self, change: Any, now: float = 0.0, join: JoinRule = default_join) -> Change:
        """Apply one LSP content change to the text and every span (rules in the module docstring)."""
        return self.apply_edit(self.doc.apply_change(change), now, join, applied=True)

    def apply_changes(self, changes: Iterable[Any], now: float = 0.0, join: JoinRule = default_join) -> list[Change]:
        """Apply a didChange's contentChanges in order (each is relative to the text after the last)."""
        return [self.apply(c, now, join) for c in changes]

    def apply_edit(self, edit: Edit, now: float = 0.0, join: JoinRule = default_join, *, applied: bool = False) -> Change:
        """Apply `edit` (code-point offsets), to the text too unless `applied` says it already was."""
        if not applied:
            edit = self.doc.replace(*edit)
        a, b, inserted = edit
        n = len(inserted)
        delta = n - (b - a)
        touched: list[Span] = []
        ended: list[Span] = []
        text = None
        for sp in self.spans.values():
            s, e = sp.start, sp.end
            if b < s or (b == s and (a < b or s < e)):  # rule 1: before (or touching its start)
                if delta:
                    sp.start = s + delta
                    sp.end = e + delta
            elif a > e:  # rule 2: after
                continue
            elif a == e:  # rule 3: continues at the end
                if n:
                    if text is None:
                        text = self.doc.text
                    k = join(sp, text[s:e], inserted)
                    if k > 0:
                        sp.end = e + k
                        sp.updated_at = now
                        touched.append(sp)
            elif n == 0 and a <= s and b >= e:  # rule 5: deleted
                sp.start = sp.end = a
                sp.ended = "deleted"
                sp.updated_at = now
                ended.append(sp)
            else:  # rule 4: overlaps the interior
                sp.start = s if s < a else a
                sp.end = (e if e > b else b) + delta
                sp.updated_at = now
                touched.append(sp)
        for sp in ended:
            del self.spans[sp.id]
        return Change(edit, touched, ended)
