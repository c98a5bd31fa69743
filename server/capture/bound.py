"""Where a suggestion, or the user's own text in its place, ends.

A *unit* is a line for code and a sentence for prose. Suggestions are bounded in units, and the text
a user types where a suggestion was shown (rejection capture) is bounded "like the suggestion was": to
as many units as the suggestion had.

Boundaries (`boundaries`), as indices into the text where a unit ends (the unit is `text[:i]` after the
previous boundary; the boundary character itself is not part of the unit):

- code: every line break (`\\n`, `\\r\\n` or `\\r`, as LSP counts lines), at the break's first character.
- prose: every line break, and every sentence end: a run of `.`, `!`, `?` or `…`, with any closing
  quotes or brackets, *followed by whitespace*. A terminator at the very end of the text is not yet a
  boundary: the next character decides (so "3.14" and "e.g." typed one key at a time do not end a
  sentence early). A few abbreviations ("e.g.", "i.e.", "etc.", "Dr." ...) and single capital initials
  ("J. Smith") do not end sentences.
"""

from __future__ import annotations

import re
from typing import Literal

Mode = Literal["code", "prose"]

#: VS Code language ids whose text is prose; every other language is code.
PROSE_LANGUAGES = frozenset(
    {
        "markdown",
        "mdx",
        "plaintext",
        "text",
        "latex",
        "tex",
        "bibtex",
        "restructuredtext",
        "rst",
        "asciidoc",
        "org",
        "quarto",
        "git-commit",
        "scminput",
    }
)

_LINE_BREAK = re.compile(r"\r\n?|\n")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]»]*(?=\s)")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf al approx dr mr mrs ms prof sr jr st no fig eq resp viz ca".split()
)


def mode_for_language(language_id: str) -> Mode:
    """'prose' for the languages in PROSE_LANGUAGES, else 'code'."""
    return "prose" if (language_id or "").lower() in PROSE_LANGUAGES else "code"


def _is_abbreviation(text: str, terminator_at: int) -> bool:
    if text[terminator_at] != ".":
        return False
    m = _WORD_BEFORE.search(text, 0, terminator_at)
    if not m:
        return False
    word = m.group(1).rstrip(".")
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith"
        return True
    return word.lower() in _ABBREVIATIONS


def boundaries(text: str, mode: Mode) -> list[int]:
    """Sorted indices where units of `text` end (see the module docstring)."""
    ends = [m.start() for m in _LINE_BREAK.finditer(text)]
    if mode == "prose":
        sentence = [m.end() for m in _SENTENCE_END.finditer(text) if not _is_abbreviation(text, m.start())]
        if sentence:
            ends = sorted(set(ends).union(sentence))
    return ends


def count_units(text: str, mode: Mode) -> int:
    """Units in `text`: 1 + the boundaries followed by more non-blank text; at least 1."""
    n = 1
    for i in boundaries(text, mode):
        if text[i:].strip():
            n += 1
    return n


def bound(text: str, mode: Mode, units: int = 1) -> str:
    """The prefix of `text` holding its first `units` units (at least one): a code suggestion stops
    before the line break that ends its last line, prose after the sentence's closing punctuation."""
    ends = boundaries(text, mode)
    units = max(units, 1)
    return text[: ends[units - 1]] if len(ends) >= units else text


def continuation(head: str, inserted: str, mode: Mode, units: int | None = None) -> int:
    """How many leading characters of `inserted`, typed right at the end of `head`, still belong to it.

    units=None (a span the user accepted): the insertion continues `head`'s last unit up to that unit's
    end, so typing on after an accepted line or an unfinished sentence extends it, but a new line, or a
    new sentence after a finished one, does not. units=n (text typed in place of a suggestion of n
    units): `head` + insertion may hold up to n units.
    """
    if not inserted:
        return 0
    combined = head + inserted
    ends = boundaries(combined, mode)
    n = len(head)
    if units is None:
        # The last unit of `head` is finished when only blanks follow its last boundary ("x.\n", "x. ").
        if any(e <= n and not combined[e:n].strip() for e in ends):
            return 0
        limit = next((e for e in ends if e >= n), None)
    else:
        limit = ends[units - 1] if len(ends) >= max(units, 1) else None
    if limit is None:
        return len(inserted)
    return min(max(limit - n, 0), len(inserted))
