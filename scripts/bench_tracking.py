#!/usr/bin/env python3
"""Micro-benchmark of capture: the cost of one textDocument/didChange with 1, 10 and 100 spans in
flight, and the size of the database per 1,000 suggestions.

Typing is simulated on a real source file (Python standard library modules joined to --lines lines):
one-character insertions, some backspaces and line breaks, at a cursor that wanders, partly inside
the spans. Each change arrives as an LSP incremental change (line, UTF-16 character) and is timed
through `TrackedDocument.apply` (position conversion, text splice, line index, every span) and
through `Capture.change` (the same plus acceptance inference and the cursor-left check; no store).
Full-document sync (diffing old and new text) is timed too.

The database part records --suggestions suggestions with prompts cut from the same sources (about
--prompt-chars characters each, as the prompt plus its prefix and suffix), a third of them accepted
and settled, and reports the file size after a checkpoint, and the time per write.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import random
import shlex
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.capture.session import Capture  # noqa: E402
from server.capture.settle import SettleConfig  # noqa: E402
from server.capture.tracking import Span, TrackedDocument  # noqa: E402
from server.store import Store, SuggestionRecord  # noqa: E402


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}; {os.cpu_count()} cores ({usable} usable); Python {platform.python_version()} on {platform.system()}"


def source_text(lines: int) -> str:
    out: list[str] = []
    for f in sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py")):
        out += Path(f).read_text(encoding="utf-8", errors="replace").splitlines()
        if len(out) >= lines:
            break
    return "\n".join(out[:lines]) + "\n"


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def typing_changes(text: str, n: int, rng: random.Random) -> list[tuple[int, int, str]]:
    """(offset start, offset end, inserted) edits of simulated typing, in code-point offsets."""
    edits = []
    cursor = len(text) // 2
    length = len(text)
    for _ in range(n):
        r = rng.random()
        if r < 0.02:  # jump somewhere else in the file
            cursor = rng.randrange(length)
        if r < 0.12 and cursor > 0:  # backspace
            edits.append((cursor - 1, cursor, ""))
            cursor -= 1
            length -= 1
        elif r < 0.16:
            edits.append((cursor, cursor, "\n    "))
            cursor += 5
            length += 5
        else:
            c = rng.choice("abcdefghijklmnopqrstuvwxyz _().,=é😀")
            edits.append((cursor, cursor, c))
            cursor += len(c)
            length += len(c)
    return edits


def accept_suggestions(cap: Capture, uri: str, count: int, rng: random.Random, around: int) -> None:
    """Put `count` spans in flight the way the server does: show a suggestion, accept it."""
    doc = cap.document(uri)
    for i in range(count):
        # Half of them near the typing, the rest anywhere: the cost per span is the same.
        centre = around if i % 2 == 0 else rng.randrange(len(doc) - 50)
        offset = max(0, min(len(doc) - 1, centre + rng.randrange(-200, 200)))
        line, character = doc.position_at(offset)
        offset = doc.offset_at(line, character)
        y = rng.choice(["foo(bar)", "self.value + 1", "return None", "items.append(x)"])
        cap.shown(SuggestionRecord(uri=uri, suggestion=y, line=line, character=character, id=f"s{i}"))
        pos = {"line": line, "character": character}
        cap.change(uri, [{"range": {"start": pos, "end": pos}, "text": y}])
    assert len(cap.spans(uri)) == count


def bench_tracking(text: str, spans: int, changes: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    uri = "file:///bench/module.py"
    never = 10.0**9
    cap = Capture(None, SettleConfig(cursor_margin_lines=10**9, settle_seconds=never, max_span_seconds=never), clock=lambda: 0.0)
    cap.open(uri, text, "python")
    accept_suggestions(cap, uri, spans, rng, len(text) // 2)
    td = TrackedDocument(cap.document(uri).text)
    for s in cap.spans(uri):
        td.add(Span(s.id, s.start, s.end))
    edits = typing_changes(td.text, changes, rng)
    t_track, t_capture = [], []
    for a, b, new in edits:
        (l1, c1), (l2, c2) = td.doc.position_at(a), td.doc.position_at(b)
        change = {"range": {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}, "text": new}
        t0 = time.perf_counter()
        td.apply(change)
        t1 = time.perf_counter()
        cap.change(uri, [change])
        t2 = time.perf_counter()
        t_track.append(t1 - t0)
        t_capture.append(t2 - t1)
    assert td.text == cap.document(uri).text
    return sorted(t_track), sorted(t_capture)


def bench_full_sync(text: str, changes: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    td = TrackedDocument(text)
    for i in range(100):
        start = rng.randrange(len(text) - 50)
        td.add(Span(f"s{i}", start, start + rng.randrange(5, 40)))
    current = text
    out = []
    for a, b, new in typing_changes(text, changes, rng):
        current = current[:a] + new + current[b:]
        t0 = time.perf_counter()
        td.apply({"text": current})
        out.append(time.perf_counter() - t0)
    return sorted(out)


def bench_database(text: str, suggestions: int, prompt_chars: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data" / "redline.db"
        store = Store(path)
        write, settle = [], []
        for i in range(suggestions):
            at = rng.randrange(len(text) - prompt_chars)
            prefix = text[at : at + prompt_chars * 3 // 4]
            suffix = text[at + prompt_chars * 3 // 4 : at + prompt_chars]
            y = text[at + prompt_chars : at + prompt_chars + rng.randrange(10, 80)]
            rec = SuggestionRecord(
                uri=f"file:///home/u/project/pkg/module_{i % 40}.py",
                suggestion=y,
                prompt=f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
                prefix=prefix,
                suffix=suffix,
                language="python",
                line=rng.randrange(2000),
                character=rng.randrange(80),
                model_version="base@2025-01-01",
                policy=rng.choice(["base", "sup", "pref", "cost", "early", "mixture"]),
                latency_ms=rng.uniform(100, 400),
            )
            t0 = time.perf_counter()
            store.record_suggestion(rec)
            write.append(time.perf_counter() - t0)
            if i % 3 == 0:
                store.mark_accepted(rec.id, y, "command")
                t0 = time.perf_counter()
                store.record_outcome(rec.id, "edited", y[: len(y) // 2] + " changed", "idle")
                settle.append(time.perf_counter() - t0)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))
        store.close()
    write.sort()
    settle.sort()
    return {
        "bytes": size,
        "write_p50": percentile(write, 0.5),
        "write_p99": percentile(write, 0.99),
        "settle_p50": percentile(settle, 0.5),
        "settle_p99": percentile(settle, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1500, help="lines in the simulated document (default 1500)")
    ap.add_argument("--changes", type=int, default=5000, help="didChange notifications per run (default 5000)")
    ap.add_argument("--spans", type=int, nargs="+", default=[1, 10, 100], help="spans in flight (default 1 10 100)")
    ap.add_argument("--suggestions", type=int, default=1000, help="suggestions written to the database (default 1000)")
    ap.add_argument("--prompt-chars", type=int, default=1500, help="characters of context per suggestion (default 1500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-db", action="store_true", help="only the tracking figures")
    args = ap.parse_args(argv)

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    text = source_text(args.lines)
    print(f"document: {text.count(chr(10))} lines, {len(text)} characters; {args.changes} changes per run")
    print()
    print("per didChange (incremental)   p50 (µs)   p99 (µs)   max (µs)")
    for n in args.spans:
        track, capture = bench_tracking(text, n, args.changes, args.seed)
        for name, t in (("tracking", track), ("Capture.change", capture)):
            print(
                f"  {n:>3} spans, {name:<15} {percentile(t, .5) * 1e6:>8.1f}   {percentile(t, .99) * 1e6:>8.1f}"
                f"   {t[-1] * 1e6:>8.1f}"
            )
    full = bench_full_sync(text, min(args.changes, 1000), args.seed)
    print(f"  100 spans, full-document sync {percentile(full, .5) * 1e6:>6.1f}   {percentile(full, .99) * 1e6:>8.1f}   {full[-1] * 1e6:>8.1f}")
    if not args.skip_db:
        db = bench_database(text, args.suggestions, args.prompt_chars, args.seed)
        per_1000 = db["bytes"] / args.suggestions * 1000
        print()
        print(f"database: {per_1000 / 1e6:.2f} MB per 1,000 suggestions ({args.suggestions} written, ~{args.prompt_chars} characters of context each, a third settled)")
        print(f"  record_suggestion p50 {db['write_p50'] * 1e3:.2f} ms, p99 {db['write_p99'] * 1e3:.2f} ms (includes redaction)")
        print(f"  record_outcome    p50 {db['settle_p50'] * 1e3:.2f} ms, p99 {db['settle_p99'] * 1e3:.2f} ms (synchronous=FULL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
