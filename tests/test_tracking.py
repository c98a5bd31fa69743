"""Document positions, span tracking, bounds, acceptance inference, settling, and `Capture`."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.capture.bound import bound, boundaries, continuation, count_units, mode_for_language
from server.capture.session import Capture
from server.capture.settle import SettleConfig, classify, cursor_left, cursor_window, is_acceptance, outside, time_reason
from server.capture.tracking import Document, Span, TrackedDocument, diff, utf16_len
from server.store.records import SuggestionRecord

# --- a reference model, written independently of tracking.py ---------------------------------------

ALPHABET = ["a", "b", " ", ".", "\n", "\r", "\r\n", "é", "中", "😀", "👍🏽", "x"]


def ref_line_starts(text: str) -> list[int]:
    starts, i = [0], 0
    while i < len(text):
        if text[i] == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            starts.append(i + 2)
            i += 2
            continue
        if text[i] in "\r\n":
            starts.append(i + 1)
        i += 1
    return starts


def ref_position(text: str, offset: int) -> tuple[int, int]:
    starts = ref_line_starts(text)
    line = max(i for i, s in enumerate(starts) if s <= offset)
    return line, sum(2 if ord(c) > 0xFFFF else 1 for c in text[starts[line] : offset])


def ref_diff(old: str, new: str) -> tuple[int, int, str]:
    p = 0
    while p < min(len(old), len(new)) and old[p] == new[p]:
        p += 1
    q = 0
    while q < min(len(old), len(new)) - p and old[-1 - q] == new[-1 - q]:
        q += 1
    return p, len(old) - q, new[p : len(new) - q]


class RefSpan:
    """A span as the set of characters it owns: one flag per character of the document."""

    def __init__(self, n: int, start: int, end: int, mode: str, units: int | None) -> None:
        self.tags = [start <= i < end for i in range(n)]
        self.mode, self.units = mode, units
        self.ended = False

    def bounds(self) -> tuple[int, int]:
        idx = [i for i, t in enumerate(self.tags) if t]
        assert idx == list(range(idx[0], idx[-1] + 1)), "a span must stay contiguous"
        return idx[0], idx[-1] + 1

    def edit(self, text: str, a: int, b: int, new: str) -> None:
        s, e = self.bounds()
        removed_inside = any(self.tags[a:b])
        if removed_inside:
            flags = [True] * len(new)
        elif a == b and s < a < e:
            flags = [True] * len(new)
        elif a == e:
            k = continuation(text[s:e], new, self.mode, self.units)
            flags = [True] * k + [False] * (len(new) - k)
        else:
            flags = [False] * len(new)
        self.tags = self.tags[:a] + flags + self.tags[b:]
        if not any(self.tags):
            self.ended = True


def valid_offset(text: str, i: int) -> int:
    """LSP cannot address the middle of a "\\r\\n": step back over it."""
    if 0 < i < len(text) and text[i - 1] == "\r" and text[i] == "\n":
        return i - 1
    return i


texts = st.lists(st.sampled_from(ALPHABET), max_size=30).map("".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_spans_follow_random_edits_like_the_reference(data):
    text = data.draw(texts, label="text")
    if not text:
        text = "seed"
    td = TrackedDocument(text)
    refs: dict[str, RefSpan] = {}
    for k in range(data.draw(st.integers(1, 3), label="spans")):
        s = data.draw(st.integers(0, len(text) - 1))
        e = data.draw(st.integers(s + 1, len(text)))
        mode = data.draw(st.sampled_from(["code", "prose"]))
        units = data.draw(st.sampled_from([None, 1, 2]))
        td.add(Span(f"s{k}", s, e, mode=mode, units=units))
        refs[f"s{k}"] = RefSpan(len(text), s, e, mode, units)

    for _ in range(data.draw(st.integers(1, 25), label="edits")):
        n = len(text)
        full = data.draw(st.booleans(), label="full sync")
        a = valid_offset(text, data.draw(st.integers(0, n)))
        b = valid_offset(text, data.draw(st.integers(a, n)))
        new = data.draw(texts, label="inserted")
        if data.draw(st.booleans()):  # straddle a span boundary on purpose
            live = [r for r in refs.values() if not r.ended]
            if live:
                s, e = live[0].bounds()
                a = valid_offset(text, data.draw(st.integers(0, s)))
                b = valid_offset(text, data.draw(st.integers(max(a, s), n)))
        if full:
            after = text[:a] + new + text[b:]
            a, b, new = ref_diff(text, after)
            change = {"text": after}
        else:
            (l1, c1), (l2, c2) = ref_position(text, a), ref_position(text, b)
            change = {"range": {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}, "text": new}
        result = td.apply(change)
        assert tuple(result.edit) == (a, b, new)
        for r in refs.values():
            if not r.ended:
                r.edit(text, a, b, new)
        text = text[:a] + new + text[b:]

        assert td.text == text
        assert td.doc.line_count == len(ref_line_starts(text))
        assert [td.doc.line_start(i) for i in range(td.doc.line_count)] == ref_line_starts(text)
        ended = {s.id for s in result.ended}
        for sid, r in refs.items():
            if r.ended:
                assert sid not in td.spans
                continue
            assert sid not in ended
            s, e = r.bounds()
            span = td.spans[sid]
            assert (span.start, span.end) == (s, e)
            assert td.span_text(span) == text[s:e]


@settings(max_examples=150, deadline=None)
@given(texts, st.data())
def test_positions_round_trip(text, data):
    doc = Document(text)
    i = valid_offset(text, data.draw(st.integers(0, len(text))))
    line, ch = ref_position(text, i)
    assert doc.position_at(i) == (line, ch)
    assert doc.offset_at(line, ch) == i
    assert doc.utf16_offset(i) == utf16_len(text[:i])
    assert doc.offset_from_utf16(utf16_len(text[:i])) == i
    assert doc.line_of(i) == line


@settings(max_examples=150, deadline=None)
@given(texts, texts)
def test_diff_is_the_minimal_single_edit(old, new):
    a, b, ins = diff(old, new)
    assert old[:a] + ins + old[b:] == new
    assert (a, b, ins) == ref_diff(old, new)


def test_line_index_survives_long_distance_edits():
    rng = random.Random(7)
    lines = [f"line {i} " + "é" * (i % 3) + "😀" * (i % 2) for i in range(2000)]
    text = "\r\n".join(lines) + "\n"
    doc = Document(text)
    for step in range(400):
        a = valid_offset(text, rng.randrange(len(text) + 1))
        b = valid_offset(text, min(len(text), a + rng.choice([0, 0, 1, 5, 40])))
        new = rng.choice(["", "x", "\n", "\r\n", "ab\ncd", "😀", "\r"])
        doc.replace(a, b, new)
        text = text[:a] + new + text[b:]
        if step % 50 == 0:
            assert [doc.line_start(i) for i in range(doc.line_count)] == ref_line_starts(text)
    assert doc.text == text
    assert [doc.line_start(i) for i in range(doc.line_count)] == ref_line_starts(text)


def test_positions_count_utf16_units_and_clamp():
    doc = Document("a😀b\r\nsecond\rthird\n")
    assert [doc.line_text(i) for i in range(doc.line_count)] == ["a😀b", "second", "third", ""]
    assert doc.offset_at(0, 3) == 2  # after the emoji: 1 + 2 units
    assert doc.offset_at(0, 2) == 1  # inside the surrogate pair: rounds down to its start
    assert doc.offset_at(0, 99) == 3  # past the end of the line: before its line break
    assert doc.offset_at(99, 0) == len(doc.text)  # past the last line: end of document
    assert doc.position_at(3) == (0, 4)
    assert doc.offset_at(2, 5) == doc.text.index("third") + 5


def test_incremental_change_accepts_lsprotocol_like_objects():
    class P:
        def __init__(self, line, character):
            self.line, self.character = line, character

    class R:
        def __init__(self, s, e):
            self.start, self.end = s, e

    class C:
        def __init__(self, r, text):
            self.range, self.text = r, text

    doc = Document("hello\nworld\n")
    doc.apply_change(C(R(P(1, 0), P(1, 5)), "there"))
    assert doc.text == "hello\nthere\n"


# --- span rules, one by one ------------------------------------------------------------------------


def tracked(text: str, start: int, end: int, **kw) -> tuple[TrackedDocument, Span]:
    td = TrackedDocument(text)
    return td, td.add(Span("s", start, end, **kw))


def test_typing_before_the_span_shifts_it():
    td, s = tracked("x = foo()", 4, 9)
    td.apply_edit((4, 4, "self."))
    assert td.span_text(s) == "foo()" and s.start == 9


def test_typing_at_the_end_continues_the_line_but_not_a_new_line():
    td, s = tracked("x = foo", 4, 7)
    td.apply_edit((7, 7, "(1)"))
    assert td.span_text(s) == "foo(1)"
    td.apply_edit((10, 10, "\nnext"))
    assert td.span_text(s) == "foo(1)"


def test_prose_continues_an_unfinished_sentence_only():
    td, s = tracked("It was a dark", 0, 13, mode="prose")
    td.apply_edit((13, 13, " night."))
    assert td.span_text(s) == "It was a dark night."
    td.apply_edit((20, 20, " Then"))
    assert td.span_text(s) == "It was a dark night."


def test_a_straddling_replacement_joins_the_span():
    td, s = tracked("abc DEF ghi", 4, 7)
    td.apply_edit((2, 5, "XY"))  # replaces "c D"
    assert td.text == "abXYEF ghi" and td.span_text(s) == "XYEF"


def test_deleting_the_whole_span_ends_it():
    td, s = tracked("abc DEF ghi", 4, 7)
    change = td.apply_edit((3, 8, ""))
    assert change.ended == [s] and s.ended == "deleted" and "s" not in td.spans


def test_replacing_the_whole_span_keeps_the_replacement():
    td, s = tracked("abc DEF ghi", 4, 7)
    td.apply_edit((4, 7, "xyz"))
    assert td.span_text(s) == "xyz"


def test_crlf_and_astral_characters_inside_a_span():
    td, s = tracked("a\r\nb😀c\r\n", 3, 6)
    td.apply({"range": {"start": {"line": 1, "character": 3}, "end": {"line": 1, "character": 3}}, "text": "👍"})
    assert td.span_text(s) == "b😀👍c"


# --- bound -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "units", "expected"),
    [
        ("foo(1)\nbar()", "code", 1, "foo(1)"),
        ("foo(1)\r\nbar()", "code", 1, "foo(1)"),
        ("foo(1)\nbar()\nbaz", "code", 2, "foo(1)\nbar()"),
        ("\n    return x\nmore", "code", 2, "\n    return x"),
        ("no break", "code", 1, "no break"),
        ("It rains. The sun", "prose", 1, "It rains."),
        ("It rains! The sun", "prose", 1, "It rains!"),
        ('He said "stop." Then', "prose", 1, 'He said "stop."'),
        ("Use e.g. this. Next", "prose", 1, "Use e.g. this."),
        ("Pi is 3.14 exactly. Yes", "prose", 1, "Pi is 3.14 exactly."),
        ("Ask J. Smith today. Ok", "prose", 1, "Ask J. Smith today."),
        ("One. Two. Three.", "prose", 2, "One. Two."),
        ("Line one\nline two", "prose", 1, "Line one"),
        ("Ends with a stop.", "prose", 1, "Ends with a stop."),
    ],
)
def test_bound(text, mode, units, expected):
    assert bound(text, mode, units) == expected


@pytest.mark.parametrize(
    ("text", "mode", "units"),
    [("x", "code", 1), ("a\nb", "code", 2), ("a\n", "code", 1), ("a\n\n", "code", 1), ("One. Two.", "prose", 2), ("One. ", "prose", 1), ("", "code", 1)],
)
def test_count_units(text, mode, units):
    assert count_units(text, mode) == units


@pytest.mark.parametrize(
    ("head", "inserted", "mode", "units", "k"),
    [
        ("foo(", "x)\nbar", "code", None, 2),
        ("foo()", "\n", "code", None, 0),
        ("foo\r", "\n", "code", None, 0),
        ("foo()\n", "x", "code", None, 0),
        ("sat", ". It", "prose", None, 1),
        ("sat.", " It", "prose", None, 0),
        ("3.", "14", "prose", None, 2),
        ("", "abc\ndef", "code", 1, 3),
        ("", "abc\ndef\nghi", "code", 2, 7),
        ("", "\n", "code", 1, 0),
        ("", "\n", "code", 2, 1),
        ("abc", "", "code", None, 0),
    ],
)
def test_continuation(head, inserted, mode, units, k):
    assert continuation(head, inserted, mode, units) == k


def test_boundaries_and_modes():
    assert boundaries("a\r\nb\rc\nd", "code") == [1, 4, 6]
    assert mode_for_language("markdown") == "prose" and mode_for_language("python") == "code"
    assert mode_for_language("") == "code"


# --- acceptance inference and outcome names --------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "inserted", "accepted"),
    [
        ("foo(bar)", "foo(bar)", True),  # the whole suggestion
        ("foo bar baz", "foo", True),  # a word: partial accept
        ("foo bar baz", " bar", False),  # not where the suggestion starts
        ("foo bar baz", "foo bar", True),
        ("foo(bar)", "foo(", True),  # ends at a boundary of the suggestion
        ("foo(bar)", "fo", False),  # cuts a word
        ("foo(bar)", "f", False),  # one key typed over the ghost text is typing
        ("x", "x", True),  # ...unless it is all of it
        ("foo", "fox", False),
        ("foo", "", False),
        ("line one\nline two", "line one", True),  # accept by line
    ],
)
def test_is_acceptance(remaining, inserted, accepted):
    assert is_acceptance(remaining, inserted) is accepted


@pytest.mark.parametrize(
    ("span_kind", "y", "accepted_text", "final", "kind"),
    [
        ("accepted", "foo(1)", "foo(1)", "foo(1)", "accepted"),
        ("accepted", "foo(1)", "foo(1)", "foo(2)", "edited"),
        ("accepted", "foo(1)", "foo(1)", "", "deleted"),
        ("accepted", "foo bar", "foo", "foo", "partial"),
        ("accepted", "foo bar", "foo", "foo baz", "edited"),
        ("typed", "foo bar", None, "whatever", "rejected_typed"),
    ],
)
def test_classify(span_kind, y, accepted_text, final, kind):
    assert classify(span_kind, y, accepted_text, final) == kind


def test_time_and_cursor_rules():
    cfg = SettleConfig(settle_seconds=10, max_span_seconds=100, cursor_margin_lines=1)
    s = Span("s", 0, 1, created_at=0, updated_at=50)
    assert time_reason(s, 59, cfg) is None
    assert time_reason(s, 60, cfg) == "idle"
    s.updated_at = 99
    assert time_reason(s, 100, cfg) == "max_age"
    assert not cursor_left(5, 6, 7, cfg) and cursor_left(5, 6, 8, cfg) and cursor_left(5, 6, 3, cfg)
    with pytest.raises(ValueError):
        SettleConfig(settle_seconds=0)


@settings(max_examples=150, deadline=None)
@given(texts, st.data())
def test_the_offset_window_agrees_with_cursor_left(text, data):
    text = text or "x"
    doc = Document(text)
    s = data.draw(st.integers(0, len(text) - 1))
    span = Span("s", s, data.draw(st.integers(s + 1, len(text))))
    line = data.draw(st.integers(0, doc.line_count - 1))
    cfg = SettleConfig(cursor_margin_lines=data.draw(st.integers(0, 3)))
    expected = cursor_left(doc.line_of(span.start), doc.line_of(span.end - 1), line, cfg)
    assert outside(span, cursor_window(doc, line, cfg)) == expected


# --- Capture, event by event -----------------------------------------------------------------------

URI = "file:///work/project/app.py"


def ins(line: int, ch: int, text: str) -> dict:
    pos = {"line": line, "character": ch}
    return {"range": {"start": pos, "end": pos}, "text": text}


def rep(l1: int, c1: int, l2: int, c2: int, text: str) -> dict:
    return {"range": {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}, "text": text}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cap(clock):
    c = Capture(None, SettleConfig(settle_seconds=10, cursor_margin_lines=2), clock=clock)
    c.open(URI, "def area(r):\n    return \n", "python")
    return c


def shown(cap: Capture, y: str, line: int, ch: int, uri: str = URI) -> SuggestionRecord:
    rec = SuggestionRecord(uri=uri, suggestion=y, line=line, character=ch, language="python")
    assert cap.shown(rec)
    return rec


def test_accept_inferred_then_edited_then_idle(cap, clock):
    rec = shown(cap, "3.14 * r * r", 1, 11)
    cap.change(URI, [ins(1, 11, "3.14 * r * r")])
    assert cap.span_text(rec.id) == "3.14 * r * r"
    cap.change(URI, [rep(1, 11, 1, 15, "math.pi")])
    clock.t += 9
    assert cap.tick() == []
    clock.t += 1
    [o] = cap.tick()
    assert (o.kind, o.final_text, o.settle_reason) == ("edited", "math.pi * r * r", "idle")
    assert o.cost == pytest.approx(2 / 7)  # "3" "." "14" -> "math" "." "pi": 2 substitutions of 7 tokens


def test_accept_by_command_when_the_editor_replaced_a_range(cap):
    rec = shown(cap, "r ** 2", 1, 11)
    cap.change(URI, [ins(1, 11, "r")])  # typed the first character over the ghost text
    cap.change(URI, [rep(1, 11, 1, 12, "r ** 2")])  # the editor inserts the whole item over it
    assert cap.accepted(rec.id)
    [o] = cap.settle_all()
    assert (o.kind, o.final_text) == ("accepted", "r ** 2")


def test_partial_accepts_word_by_word(cap):
    rec = shown(cap, "math.pi * r ** 2", 1, 11)
    cap.change(URI, [ins(1, 11, "math.")])
    cap.change(URI, [ins(1, 16, "pi")])
    [o] = cap.settle_all()
    assert (o.kind, o.final_text) == ("partial", "math.pi")


def test_typing_through_then_accepting_the_rest(cap):
    rec = shown(cap, "r * r", 1, 11)
    cap.change(URI, [ins(1, 11, "r")])
    cap.change(URI, [ins(1, 12, " * r")])  # the rest, accepted with Tab
    assert cap.accepted(rec.id)
    [o] = cap.settle_all()
    assert (o.kind, o.final_text) == ("accepted", "r * r")


def test_rejected_and_typed_is_bounded_to_the_suggestions_lines(cap, clock):
    rec = shown(cap, "0", 1, 11)
    for i, c in enumerate("r*r"):
        cap.change(URI, [ins(1, 11 + i, c)])
    cap.change(URI, [ins(1, 14, "\n    print(r)")])
    [o] = cap.settle_all()
    assert (o.kind, o.final_text) == ("rejected_typed", "r*r")


def test_a_two_line_suggestion_bounds_the_typed_text_to_two_lines(clock):
    cap = Capture(None, SettleConfig(), clock=clock)
    cap.open(URI, "\n", "python")
    shown(cap, "a = 1\nb = 2", 0, 0)
    cap.change(URI, [ins(0, 0, "x = 1\ny = 2\nz = 3")])
    [o] = cap.settle_all()
    assert o.final_text == "x = 1\ny = 2"


def test_deleting_an_accepted_suggestion_settles_it_as_deleted(cap):
    rec = shown(cap, "r * r", 1, 11)
    cap.change(URI, [ins(1, 11, "r * r")])
    [o] = cap.change(URI, [rep(1, 11, 1, 16, "")])  # undo
    assert (o.kind, o.final_text, o.settle_reason) == ("deleted", "", "deleted")


def test_an_edit_far_away_means_the_cursor_left(clock):
    cap = Capture(None, SettleConfig(cursor_margin_lines=1), clock=clock)
    cap.open(URI, "a\n" * 10, "python")
    rec = shown(cap, "bc", 0, 1)
    cap.change(URI, [ins(0, 1, "bc")])
    assert cap.change(URI, [ins(1, 1, "!")]) == []  # next line: still nearby
    [o] = cap.change(URI, [ins(6, 0, "#")])
    assert (o.suggestion_id, o.settle_reason) == (rec.id, "cursor_left")


def test_cursor_save_and_close_settle(cap):
    a = shown(cap, "r", 1, 11)
    cap.change(URI, [ins(1, 11, "r")])
    assert cap.cursor(URI, 1, 12) == []
    assert cap.change(URI, [ins(2, 0, "\n" * 10)]) == []  # one line below: still nearby
    [o] = cap.cursor(URI, 9, 0)
    assert o.suggestion_id == a.id and o.settle_reason == "cursor_left"
    b = shown(cap, " + 1", 1, 12)
    cap.change(URI, [ins(1, 12, " + 1")])
    [o] = cap.save(URI)
    assert o.suggestion_id == b.id and o.settle_reason == "saved"
    c = shown(cap, "0", 1, 16)
    cap.change(URI, [ins(1, 16, "0")])
    [o] = cap.close(URI)
    assert o.suggestion_id == c.id and o.settle_reason == "closed"
    assert cap.document(URI) is None


def test_pending_suggestions_are_dropped_by_other_edits_and_by_time(cap, clock):
    shown(cap, "r * r", 1, 11)
    cap.change(URI, [ins(0, 0, "# ")])  # elsewhere
    assert cap.pending(URI) is None
    shown(cap, "r * r", 1, 11)
    clock.t += cap.config.pending_seconds
    cap.tick()
    assert cap.pending(URI) is None


def test_excluded_documents_are_left_alone(clock):
    cap = Capture(None, clock=clock)
    cap.open("file:///p/.env", "KEY=1\n", "dotenv")
    assert cap.document("file:///p/.env") is None
    assert not cap.shown(SuggestionRecord(uri="file:///p/.env", suggestion="x"))


def test_prose_rejection_is_bounded_to_the_sentence(clock):
    uri = "file:///notes/a.md"
    cap = Capture(None, clock=clock)
    cap.open(uri, "Intro. \n", "markdown")
    shown(cap, "The cat sat.", 0, 7, uri=uri)
    cap.change(uri, [ins(0, 7, "A dog ran. It barked.")])
    [o] = cap.settle_all()
    assert o.final_text == "A dog ran."


def test_full_document_sync_follows_spans(clock):
    cap = Capture(None, clock=clock)
    cap.open(URI, "x = \n", "python")
    rec = shown(cap, "foo(1)", 0, 4)
    cap.change(URI, [{"text": "x = foo(1)\n"}])
    cap.change(URI, [{"text": "x = foo(1, 2)\n"}])
    [o] = cap.settle_all()
    assert (o.suggestion_id, o.kind, o.final_text) == (rec.id, "edited", "foo(1, 2)")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_capture_survives_random_sessions(data):
    from server.store.records import OUTCOME_KINDS

    clock = Clock()
    cap = Capture(None, SettleConfig(settle_seconds=5, cursor_margin_lines=1), clock=clock)
    language = data.draw(st.sampled_from(["python", "markdown"]))
    cap.open(URI, data.draw(texts) or "start\n", language)
    shown_ids: dict[str, str] = {}
    outcomes = []
    for _ in range(data.draw(st.integers(1, 30))):
        doc = cap.document(URI)
        text = doc.text
        event = data.draw(st.sampled_from(["edit", "show", "take", "accept", "tick", "save", "cursor"]))
        if event == "edit":
            a = valid_offset(text, data.draw(st.integers(0, len(text))))
            b = valid_offset(text, data.draw(st.integers(a, len(text))))
            (l1, c1), (l2, c2) = doc.position_at(a), doc.position_at(b)
            outcomes += cap.change(URI, [rep(l1, c1, l2, c2, data.draw(texts))])
        elif event == "show":
            line, ch = doc.position_at(valid_offset(text, data.draw(st.integers(0, len(text)))))
            y = data.draw(texts.filter(bool))
            rec = SuggestionRecord(uri=URI, suggestion=y, line=line, character=ch)
            cap.shown(rec)
            shown_ids[rec.id] = y
        elif event == "take" and cap.pending(URI):
            sid = cap.pending(URI)
            y = shown_ids[sid]
            at = cap._docs[URI].pending.offset
            line, ch = doc.position_at(at)
            outcomes += cap.change(URI, [ins(line, ch, y[: data.draw(st.integers(1, len(y)))])])
        elif event == "accept" and shown_ids:
            cap.accepted(data.draw(st.sampled_from(sorted(shown_ids))))
        elif event == "tick":
            clock.t += data.draw(st.sampled_from([0.5, 3, 6]))
            outcomes += cap.tick()
        elif event == "save":
            outcomes += cap.save(URI)
        elif event == "cursor":
            line = data.draw(st.integers(0, doc.line_count - 1))
            outcomes += cap.cursor(URI, line, 0)
        for s in cap.spans(URI):
            assert 0 <= s.start < s.end <= len(cap.document(URI))
    outcomes += cap.settle_all()
    seen = set()
    for o in outcomes:
        assert o.kind in OUTCOME_KINDS and o.suggestion_id in shown_ids
        assert o.suggestion_id not in seen  # one outcome per suggestion
        seen.add(o.suggestion_id)
        if o.kind == "deleted":
            assert o.final_text == ""
        if o.kind == "accepted":
            assert o.final_text == shown_ids[o.suggestion_id]
    assert cap.spans() == []
