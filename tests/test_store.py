"""The SQLite store: schema and migrations, file modes, WAL readers, durability, corruption
recovery, redaction at the last gate, statistics, exports, forgetting."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlite_utils

from server import paths
from server.capture.session import Capture
from server.capture.settle import SettleConfig
from server.store import MIGRATIONS, Store, SuggestionRecord, migrate, schema_version
from server.store.records import SpanRecord
from tests.planted_secrets import planted

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_M001 = Path(__file__).parent / "fixtures" / "store_m001.sql"

EXPECTED_SCHEMA = """\
CREATE TABLE "_migrations" (
   "name" TEXT PRIMARY KEY,
   "applied_at" REAL
)
CREATE TABLE "outcomes" (
   "suggestion_id" TEXT PRIMARY KEY REFERENCES "suggestions"("id"),
   "kind" TEXT NOT NULL,
   "final_text" TEXT NOT NULL,
   "cost" REAL,
   "char_cost" REAL,
   "settled_at" REAL NOT NULL,
   "settle_reason" TEXT
)
CREATE INDEX "idx_outcomes_settled_at"
    ON "outcomes" ("settled_at")
CREATE TABLE "settings" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
)
CREATE TABLE "spans" (
   "suggestion_id" TEXT PRIMARY KEY REFERENCES "suggestions"("id"),
   "uri" TEXT NOT NULL,
   "start" INTEGER NOT NULL,
   "length" INTEGER NOT NULL,
   "text" TEXT NOT NULL,
   "kind" TEXT NOT NULL,
   "mode" TEXT,
   "units" INTEGER,
   "created_at" REAL,
   "updated_at" REAL
)
CREATE TABLE "suggestions" (
   "id" TEXT PRIMARY KEY,
   "created_at" REAL NOT NULL,
   "uri" TEXT NOT NULL,
   "language" TEXT,
   "line" INTEGER,
   "character" INTEGER,
   "prompt" TEXT,
   "prefix" TEXT,
   "suffix" TEXT,
   "suggestion" TEXT NOT NULL,
   "model_version" TEXT,
   "policy" TEXT,
   "latency_ms" REAL,
   "accepted_at" REAL,
   "accept_source" TEXT,
   "accepted_text" TEXT
, "bound" TEXT)
CREATE INDEX "idx_suggestions_created_at"
    ON "suggestions" ("created_at")
CREATE INDEX "idx_suggestions_uri"
    ON "suggestions" ("uri")"""


def schema_of(conn: sqlite3.Connection) -> str:
    rows = conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY tbl_name, type = 'index', name"
    ).fetchall()
    return "\n".join(r[0] for r in rows)


def memory_db() -> sqlite_utils.Database:
    return sqlite_utils.Database(sqlite3.connect(":memory:", isolation_level=None))


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "data" / "redline.db"


@pytest.fixture
def store(db_path, clock):
    s = Store(db_path, clock=clock)
    yield s
    s.close()


def rec(uri: str = "file:///home/u/proj/a.py", y: str = "foo(1)", **kw) -> SuggestionRecord:
    kw.setdefault("prompt", "x = ")
    kw.setdefault("language", "python")
    kw.setdefault("policy", "base")
    kw.setdefault("model_version", "base@1")
    return SuggestionRecord(uri=uri, suggestion=y, **kw)


def all_bytes(path: Path) -> bytes:
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal", "-shm") if Path(f"{path}{s}").exists())


# --- schema and migrations -------------------------------------------------------------------------


def test_migrating_a_blank_database_gives_the_whole_schema():
    db = memory_db()
    assert migrate(db) == [m.__name__ for m in MIGRATIONS]
    assert schema_of(db.conn) == EXPECTED_SCHEMA
    assert migrate(db) == []  # idempotent
    assert schema_version(db) == len(MIGRATIONS) == 3


def test_the_frozen_m001_fixture_is_what_m001_makes():
    """If this fails, a shipped migration was edited: add a new one instead."""
    fresh = memory_db()
    migrate(fresh, upto=1)
    frozen = sqlite3.connect(":memory:")
    frozen.executescript(FIXTURE_M001.read_text())
    assert schema_of(fresh.conn) == schema_of(frozen)


def test_upgrading_a_database_made_by_the_previous_schema(tmp_path):
    path = tmp_path / "old" / "redline.db"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript(FIXTURE_M001.read_text())
    old.close()
    with Store(path) as s:
        assert s.migrations == ["m001_initial", "m002_indexes", "m003_bound"] and s.schema_is_current
        assert schema_of(s.conn) == EXPECTED_SCHEMA
        assert s.recovered_from is None
        assert s.suggestion("00000000000000000000000000000001")["suggestion"] == "3.14 * r * r"
        assert s.outcome("00000000000000000000000000000002")["final_text"] == "A dog ran."
        assert [sp.text for sp in s.open_spans()] == ["foo(1, 2)"]
        assert s.suggestion("00000000000000000000000000000001")["bound"] is None  # read as 'editor'
        assert s.paused is True
        assert s.stats()["total"]["suggestions"] == 3
        rec = SuggestionRecord(uri="file:///w/a.md", suggestion="A summary.", bound="answer")
        assert s.record_suggestion(rec) and s.suggestion(rec.id)["bound"] == "answer"
        with pytest.raises(ValueError, match="bound must be one of"):
            s.record_suggestion(SuggestionRecord(uri="file:///w/b.md", suggestion="x", bound="sentence"))


# --- files, modes, WAL -----------------------------------------------------------------------------


def test_files_are_private_and_wal(store, db_path):
    store.record_suggestion(rec())
    assert stat.S_IMODE(os.stat(db_path.parent).st_mode) == 0o700
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(f"{db_path}{suffix}").st_mode) == 0o600, suffix
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_default_path_is_in_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("REDLINE_HOME", str(tmp_path / "home"))
    with Store() as s:
        assert s.path == paths.database_path() == tmp_path / "home" / "redline.db"
        assert stat.S_IMODE(os.stat(tmp_path / "home").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600


def test_a_reader_reads_while_the_writer_writes(store, db_path):
    store.record_suggestion(rec())
    reader = Store.open_readonly(db_path)
    other_process = [sys.executable, "-c", f"import sqlite3; print(sqlite3.connect('file:{db_path}?mode=ro', uri=True).execute('select count(*) from suggestions').fetchone()[0])"]
    with store._write() as c:  # the writer is in the middle of a transaction
        c.execute("INSERT INTO suggestions (id, created_at, uri, suggestion) VALUES ('w', 1, 'file:///x', 'y')")
        assert reader.stats()["total"]["suggestions"] == 1  # a consistent snapshot, no waiting
        assert subprocess.run(other_process, capture_output=True, text=True, timeout=60).stdout.strip() == "1"
    assert reader.stats()["total"]["suggestions"] == 2
    with pytest.raises(PermissionError):
        reader.record_suggestion(rec())
    reader.close()


def test_a_settled_outcome_survives_kill_9(db_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from server.store import Store, SuggestionRecord
        s = Store({str(db_path)!r})
        r = SuggestionRecord(uri="file:///p/a.py", suggestion="foo(1)", id="s1")
        s.record_suggestion(r)
        s.record_outcome("s1", "edited", "foo(2)", "idle")
        print("settled", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "settled"
        proc.kill()  # SIGKILL: no atexit, no close, no checkpoint
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Store(db_path) as s:
        assert s.outcome("s1")["final_text"] == "foo(2)"


# --- corruption ------------------------------------------------------------------------------------


def test_random_bytes_are_moved_aside_and_a_fresh_database_started(db_path):
    db_path.parent.mkdir(mode=0o700)
    garbage = os.urandom(8192)
    db_path.write_bytes(garbage)
    with Store(db_path) as s:
        assert s.recovered_from is not None and s.recovered_from.name.startswith("redline.db.corrupt-")
        assert s.recovered_from.read_bytes() == garbage
        assert str(s.recovered_from) in s.recovery_message and "moved aside" in s.recovery_message
        assert s.schema_is_current and s.record_suggestion(rec())


def test_a_truncated_database_and_its_wal_are_moved_aside(db_path):
    with Store(db_path) as s:
        for i in range(300):
            s.record_suggestion(rec(prompt="context " * 200, id=f"id{i}"))
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db_path, "r+b") as f:
        f.truncate(os.path.getsize(db_path) // 2)
    Path(f"{db_path}-wal").write_bytes(b"stale wal")
    with Store(db_path) as s:
        moved = s.recovered_from
        assert moved is not None and moved.exists()
        assert Path(f"{moved}-wal").read_bytes() == b"stale wal"
        assert s.stats()["total"]["suggestions"] == 0


def test_recovery_never_overwrites_an_earlier_corrupt_copy(db_path):
    db_path.parent.mkdir(mode=0o700)
    moved = []
    for content in (b"first garbage " * 100, b"second garbage " * 100):
        db_path.unlink(missing_ok=True)
        db_path.write_bytes(content)
        with Store(db_path) as s:
            moved.append(s.recovered_from)
    assert moved[0] != moved[1]
    assert moved[0].read_bytes().startswith(b"first") and moved[1].read_bytes().startswith(b"second")


def test_errors_that_are_not_corruption_are_raised(tmp_path):
    (tmp_path / "a-folder.db").mkdir()
    with pytest.raises(OSError):
        Store(tmp_path / "a-folder.db")


# --- what gets written -----------------------------------------------------------------------------


def test_planted_secrets_never_reach_the_database(store, db_path, clock):
    corpus = planted(seed=11)
    for i, p in enumerate(corpus):
        r = rec(
            id=f"s{i}",
            prompt=f"# config\n{p.context}\n",
            prefix=p.context,
            suffix=f"\n{p.context}",
            y=p.context,
        )
        assert store.record_suggestion(r)
        store.mark_accepted(r.id, p.context, "inferred")
        store.save_spans([SpanRecord(r.id, r.uri, 0, len(p.context), p.context, "accepted")])
        if i % 2:
            store.record_outcome(r.id, "edited", p.context + "\n# edited", "idle")
    store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    raw = all_bytes(db_path)
    dumped = "\n".join(store.conn.iterdump())
    for p in corpus:
        assert p.secret.encode() not in raw, p.kind
        assert p.secret not in dumped, p.kind
    assert "«redacted:" in dumped


def test_excluded_documents_are_refused(store):
    assert not store.record_suggestion(rec(uri="file:///home/u/proj/.env.local"))
    assert not store.record_suggestion(rec(uri="file:///home/u/.ssh/config"))
    assert store.stats()["total"]["suggestions"] == 0


def test_outcomes_carry_costs_and_the_first_one_stays(store):
    r = rec(y="return a + b")
    store.record_suggestion(r)
    o = store.record_outcome(r.id, "edited", "return a - b", "idle", settled_at=5.0)
    assert (o.cost, o.settled_at) == (pytest.approx(1 / 4), 5.0)
    assert store.record_outcome(r.id, "accepted", "return a + b", "idle") is None
    assert store.outcome(r.id)["final_text"] == "return a - b"
    assert store.record_outcome("unknown", "edited", "x", "idle") is None
    with pytest.raises(ValueError):
        store.record_outcome(r.id, "liked", "x", "idle")
    with pytest.raises(ValueError):
        store.record_outcome(r.id, "edited", "x", "bored")


def test_acceptance_keeps_its_first_time_and_command_wins(store, clock):
    r = rec(y="foo bar baz")
    store.record_suggestion(r)
    store.mark_accepted(r.id, "foo", "inferred", at=10.0)
    store.mark_accepted(r.id, "foo bar baz", "command", at=11.0)
    store.mark_accepted(r.id, "foo bar baz", "inferred", at=12.0)
    row = store.suggestion(r.id)
    assert (row["accepted_at"], row["accept_source"], row["accepted_text"]) == (10.0, "command", "foo bar baz")
    assert not store.mark_accepted("unknown", "x", "command")


def test_settings_persist(db_path):
    with Store(db_path) as s:
        assert s.paused is False
        s.paused = True
        s.set_setting("retention_days", 30)
    with Store(db_path) as s:
        assert s.paused is True and s.get_setting("retention_days") == 30 and s.get_setting("nope", 1) == 1


# --- reports ---------------------------------------------------------------------------------------


def fill(store: Store) -> list[SuggestionRecord]:
    day = 86400.0
    base = time.mktime((2025, 3, 10, 12, 0, 0, 0, 0, -1))
    rows = [
        rec(y="a b c d", language="python", policy="base", created_at=base),
        rec(y="x y", language="python", policy="sup", created_at=base + 60),
        rec(uri="file:///home/u/notes/n.md", y="The cat sat.", language="markdown", policy="sup", created_at=base + day),
        rec(y="unused", language="python", policy="base", created_at=base + day),
    ]
    for r in rows:
        store.record_suggestion(r)
    store.mark_accepted(rows[0].id, rows[0].suggestion, "command", at=base)
    store.record_outcome(rows[0].id, "edited", "a b c e", "idle")  # cost 0.25
    store.mark_accepted(rows[1].id, rows[1].suggestion, "inferred", at=base)
    store.record_outcome(rows[1].id, "accepted", "x y", "saved")  # cost 0
    store.record_outcome(rows[2].id, "rejected_typed", "A dog ran.", "idle")
    return rows


def test_stats(store):
    fill(store)
    st = store.stats()
    assert st["total"]["suggestions"] == 4 and st["total"]["accepted"] == 2
    assert st["total"]["acceptance_rate"] == 0.5 and st["total"]["outcomes"] == 3
    py = st["by_language"]["python"]
    assert (py["suggestions"], py["accepted"], py["mean_cost"]) == (3, 2, pytest.approx(0.125))
    assert st["by_policy"]["sup"]["suggestions"] == 2
    assert sorted(st["by_day"]) == ["2025-03-10", "2025-03-11"]
    assert st["by_day"]["2025-03-10"]["acceptance_rate"] == 1.0
    assert st["by_kind"]["accepted"]["outcomes"] == 1 and st["by_kind"]["edited"]["mean_cost"] == 0.25


def test_export_sft_and_preference(store, tmp_path):
    rows = fill(store)
    out = tmp_path / "exports" / "sft.jsonl"
    assert store.export(out, "sft") == 3
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {"prompt", "completion", "cost", "suggestion_id", "kind"} <= set(lines[0])
    by_id = {x["suggestion_id"]: x for x in lines}
    assert by_id[rows[0].id]["completion"] == "a b c e" and by_id[rows[0].id]["prompt"] == "x = "

    pref = tmp_path / "pref.jsonl"
    assert store.export(pref, "preference") == 2  # the unchanged acceptance has no preference in it
    lines = [json.loads(x) for x in pref.read_text().splitlines()]
    assert all({"prompt", "chosen", "rejected", "cost", "suggestion_id"} <= set(x) for x in lines)
    x = next(x for x in lines if x["suggestion_id"] == rows[0].id)
    assert (x["chosen"], x["rejected"]) == ("a b c e", "a b c d")

    assert store.export(tmp_path / "late.jsonl", "sft", since=rows[2].created_at) == 1
    assert store.export(tmp_path / "typed.jsonl", "sft", kinds=["rejected_typed"]) == 1
    with pytest.raises(ValueError):
        store.export(tmp_path / "x.jsonl", "dpo")


# --- forgetting ------------------------------------------------------------------------------------


def test_forget_everything_reclaims_the_space_and_the_text(store, db_path):
    for i in range(200):
        store.record_suggestion(rec(prompt="MARKER-TEXT " * 100, id=f"id{i}"))
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(db_path)
    assert store.forget(everything=True) == 200
    assert os.path.getsize(db_path) < size / 5
    assert b"MARKER-TEXT" not in all_bytes(db_path)
    assert store.stats()["total"]["suggestions"] == 0


def test_forget_by_time_and_by_folder(store):
    rows = fill(store)
    assert store.forget(since=rows[2].created_at, until=rows[2].created_at + 1) == 2  # the second day
    assert store.suggestion(rows[2].id) is None and store.outcome(rows[2].id) is None
    assert store.suggestion(rows[0].id) is not None
    store.record_suggestion(rec(uri="file:///home/u/proj2/z.py", id="sibling"))
    store.record_suggestion(rec(uri="file:///home/u/proj%20x/z.py", id="spaced"))
    assert store.forget(folder="/home/u/proj") == 2  # not /home/u/proj2
    assert store.suggestion("sibling") is not None
    assert store.forget(folder="file:///home/u/proj%20x/") == 1
    with pytest.raises(ValueError):
        store.forget()
    with pytest.raises(ValueError):
        store.forget(everything=True, folder="/x")


def test_prune_keeps_recent_suggestions(store, clock):
    old = rec(created_at=clock.t - 40 * 86400)
    new = rec(created_at=clock.t - 1 * 86400)
    for r in (old, new):
        store.record_suggestion(r)
    store.record_outcome(old.id, "accepted", old.suggestion, "idle")
    assert store.prune(None) == 0
    assert store.prune(30) == 1
    assert store.suggestion(old.id) is None and store.suggestion(new.id) is not None


# --- with capture: a restarted server settles what the last one left ----------------------------


def test_a_restarted_server_settles_spans_left_in_flight(db_path, clock):
    uri = "file:///home/u/proj/a.py"
    store = Store(db_path, clock=clock)
    cap = Capture(store, SettleConfig(settle_seconds=30), clock=clock)
    cap.open(uri, "x = \n", "python")
    r = rec(uri=uri, y="foo(1)", line=0, character=4)
    cap.shown(r)
    pos = {"line": 0, "character": 4}
    cap.change(uri, [{"range": {"start": pos, "end": pos}, "text": "foo(1)"}])
    cap.change(uri, [{"range": {"start": {"line": 0, "character": 8}, "end": {"line": 0, "character": 9}}, "text": "2"}])
    assert cap.tick() == []  # not settled yet, but saved
    assert [s.text for s in store.open_spans()] == ["foo(2)"]
    store.close()  # the server dies here

    store = Store(db_path, clock=clock)
    [o] = Capture(store, clock=clock).recover()
    assert (o.suggestion_id, o.kind, o.final_text, o.settle_reason) == (r.id, "edited", "foo(2)", "restart")
    assert store.open_spans() == []
    assert store.suggestion(r.id)["accept_source"] == "inferred"
    store.close()
