"""Where a suggestion stops, and cleaning it into something worth showing.

`stop_at` is asked after every decoded token: as soon as it returns an index the runtime stops
decoding (fewer steps is the cheapest speed-up there is). `finalize` then trims the text: no repetition
of what already follows the cursor, no copy of the previous line, no runaway loops, nothing that is
only whitespace. An empty string means "show nothing", which beats junk.
"""

from __future__ import annotations

import re

from server.prompt import Context

MAX_BLOCK_LINES = 6  # a multi-line code suggestion is at most a short block
_SENTENCE_END = re.compile(r"[.!?](?:[\"'\)\]\u201d\u2019]*)(?=\s)")
_BAD_CHARS = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f]")


_FUNCTION_END = re.compile(r"\n(?=\S)")


def function_end(text: str) -> int | None:
    """Where a function body ends: the first line that starts at column 0 (HumanEval's own stop)."""
    m = _FUNCTION_END.search(text)
    return m.start() if m else None


def bound_stop(bound: str):
    """The stop rule of a suggestion bounded other than by the editor (server.store.records.BOUNDS):
    a whole answer runs to end-of-text (None), a function body to `function_end`."""
    if bound == "function":
        return function_end
    if bound == "answer":
        return None
    raise ValueError(f"{bound!r} has no fixed stop rule (the editor's depend on the document)")


def stop_at(ctx: Context, text: str) -> int | None:
    """Index at which to cut `text` (decoded so far), or None to keep decoding."""
    bad = _BAD_CHARS.search(text)
    limit = bad.start() if bad else None
    if ctx.prose:
        cut = _prose_stop(ctx, text)
    elif ctx.multiline:
        cut = _block_stop(ctx, text)
    else:
        nl = text.find("\n")
        cut = nl if nl >= 0 else None
    if limit is not None and (cut is None or limit < cut):
        return limit
    return cut


def _prose_stop(ctx: Context, text: str) -> int | None:
    nl = text.find("\n")
    if nl == 0 and not ctx.line_prefix.strip():
        # At the start of an empty line a newline first is just the model spacing paragraphs.
        stripped = text.lstrip("\n")
        inner = _prose_stop(ctx, stripped)
        return None if inner is None else inner + len(text) - len(stripped)
    m = _SENTENCE_END.search(text)
    end = m.end() if m else None
    if nl >= 0 and (end is None or nl < end):
        return nl
    return end


def _block_stop(ctx: Context, text: str) -> int | None:
    """A block ends at a blank line, at a line indented less than the block, or after a few lines."""
    base = len(ctx.indent)
    lines = text.split("\n")
    offset = 0
    content_lines = 0
    for i, line in enumerate(lines):
        complete = i < len(lines) - 1  # the last piece may still be growing
        if i == 0:
            first_has_content = bool((ctx.line_prefix + line).strip())
            content_lines += first_has_content
        elif complete or line.strip():
            if not line.strip():
                if content_lines:
                    return offset - 1  # a blank line after content closes the block
            else:
                indent = len(line) - len(line.lstrip())
                if content_lines and indent < base:
                    return offset - 1
                content_lines += 1
                if content_lines > MAX_BLOCK_LINES:
                    return offset - 1
        offset += len(line) + 1
    return None


def finalize(ctx: Context, text: str) -> str:
    """The suggestion to show for raw model output `text` (already cut by `stop_at` or not)."""
    cut = stop_at(ctx, text)
    if cut is not None:
        text = text[:cut]
    text = text.rstrip()
    if ctx.prose and ctx.line_prefix.endswith((" ", "\t")):
        text = text.lstrip(" \t")  # no double space after the one the user typed
    elif ctx.prose and not ctx.line_prefix.strip() and text.startswith("\n"):
        text = text.lstrip("\n")
    text = _cut_loops(text)
    text = _trim_suffix_overlap(ctx, text)
    if not text.strip():
        return ""
    if _copies_previous_line(ctx, text):
        return ""
    return text


def _trim_suffix_overlap(ctx: Context, text: str) -> str:
    """Drop what the cursor's line already has after the cursor (closing brackets, quotes...)."""
    tail = ctx.line_suffix
    if not tail.strip():
        return text
    if tail.strip() and text.strip() == tail.strip():
        return ""
    if tail.startswith(text):
        return ""  # the suggestion is exactly what is already there
    # The longest end of the suggestion that is a start of the line's remainder.
    for k in range(min(len(text), len(tail)), 0, -1):
        if text.endswith(tail[:k]):
            return text[:-k]
    return text


def _copies_previous_line(ctx: Context, text: str) -> bool:
    """A suggestion that only repeats the line above, verbatim, is the model looping."""
    first = (ctx.line_prefix + text.split("\n", 1)[0]).strip()
    if len(first) < 8:
        return False
    lines = ctx.prefix.split("\n")
    previous = [ln.strip() for ln in lines[:-1] if ln.strip()]
    return bool(previous) and previous[-1] == first


def _cut_loops(text: str) -> str:
    """Cut at the second repeat of any 12+ character chunk repeated three times in a row."""
    m = re.search(r"(.{12,}?)\1\1", text, flags=re.S)
    if m:
        return text[: m.start() + len(m.group(1))].rstrip()
    # Whole lines repeated: keep the first occurrence only.
    lines = text.split("\n")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        key = line.strip()
        if len(key) >= 6 and key in seen:
            return "\n".join(lines[:i]).rstrip()
        seen.add(key)
    return text
