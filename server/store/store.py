"""Redline's SQLite database: suggestions, their outcomes, spans in flight, settings.

One `Store` is the one writer: its methods serialise on a lock and write in `BEGIN IMMEDIATE`
transactions, so two server processes on one database (two editor windows) take turns instead of
failing. Readers (the trainer, a statistics command) open `Store.open_readonly()` or any SQLite
connection: the database is in WAL mode, so they read a consistent snapshot while the writer writes.

Privacy. The store is the last gate before the disk: every text it writes (prompt, prefix, suffix,
suggestion, accepted text, final text, span text) goes through `server.privacy.redact` here, whatever
the caller did before, and suggestions from excluded files (`server.privacy.is_excluded`) are refused.
Edit costs are computed here, from the redacted texts, so the stored cost always matches the stored
y and y′. The database file and its -wal/-shm are mode 0600; a folder the store creates is 0700.

Durability. The connection runs with synchronous=NORMAL: in WAL mode a commit is in the WAL file
(the operating system holds it) when COMMIT returns, so it survives the process being killed; only a
power cut can lose the last NORMAL commits (suggestion rows, span snapshots), which is acceptable. A
settled outcome is the data Redline exists to collect, so `record_outcome` switches that one commit to
synchronous=FULL, which also syncs the WAL to the device before returning: an outcome survives kill -9
and power loss once the call returns.

Corruption. If the file cannot be opened as a healthy database (not a database, truncated, or failing
`PRAGMA quick_check`), nothing is raised: the file and its -wal/-shm are renamed aside to
`redline.db.corrupt-<timestamp>` (never overwriting anything), a fresh database is created, and
`recovered_from` / `recovery_message` say what happened and what to do. Any other error (a locked
database, a full disk) is raised as usual.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import sqlite_utils

from ..capture.cost import edit_cost
from ..paths import database_path, ensure_private_dir
from ..privacy import is_excluded, redact
from . import reports
from .records import ACCEPT_SOURCES, BOUNDS, OUTCOME_KINDS, SETTLE_REASONS, Outcome, SpanRecord, SuggestionRecord
from .schema import MIGRATIONS, applied, migrate

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SIDE_FILES = ("-wal", "-shm", "-journal")


class CorruptDatabase(sqlite3.DatabaseError):
    """The file opened but is not a healthy database."""


def _is_corruption(exc: BaseException) -> bool:
    if isinstance(exc, CorruptDatabase):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


class Store:
    """The database (see the module docstring). `path` defaults to server.paths.database_path()."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        readonly: bool = False,
        redactor: Callable[[str], str] = redact,
        excluded: Callable[[str], bool] = is_excluded,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path) if path is not None else database_path()
        self.readonly = readonly
        self._redact = redactor
        self._excluded = excluded
        self._clock = clock
        self._lock = threading.RLock()
        self.recovered_from: Path | None = None
        self.recovery_message: str | None = None
        if readonly:
            self.conn = self._connect_readonly()
        else:
            if not self.path.parent.exists():
                ensure_private_dir(self.path.parent)
            try:
                self.conn = self._connect()
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                self._recover(exc)
                self.conn = self._connect()
        self.db = sqlite_utils.Database(self.conn)

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str] | None = None) -> Store:
        """A reader: no migrations, no writes, no recovery (errors are raised)."""
        return cls(path, readonly=True)

    # --- opening ----------------------------------------------------------------------------------

    def _precheck(self) -> None:
        """Check an existing file through a read-only connection first. It takes the usual locks
        (safe while another process writes) and reads the -wal, but cannot checkpoint: closing it
        leaves the -wal alone, whereas closing the last read-write connection to a damaged database
        would fold the -wal into it or delete it, and with it what a salvage could use."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        uri = f"file:{pathname2url(str(self.path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10)
        try:
            check = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
        if check != [("ok",)]:
            raise CorruptDatabase("; ".join(str(r[0]) for r in check[:3]))

    def _connect(self) -> sqlite3.Connection:
        self._precheck()
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        for suffix in ("", *_SIDE_FILES):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                os.chmod(p, 0o600)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # lets prune() give pages back cheaply
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(sqlite_utils.Database(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = f"file:{pathname2url(str(self.path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _recover(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        n = 0
        while True:
            target = Path(f"{self.path}.corrupt-{stamp}{'' if n == 0 else f'-{n}'}")
            if not any(Path(f"{target}{s}").exists() for s in ("", *_SIDE_FILES)):
                try:
                    os.link(self.path, target)  # fails rather than overwrite
                    break
                except FileExistsError:
                    pass
            n += 1
        os.unlink(self.path)
        for suffix in _SIDE_FILES:
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.link(side, Path(f"{target}{suffix}"))
                os.unlink(side)
        self.recovered_from = target
        self.recovery_message = (
            f"Redline's database {self.path} could not be read ({exc}). It was moved aside to {target} "
            f"and a new, empty database was started; nothing was deleted. Suggestions and edits recorded "
            f"before are in the moved file: to salvage them, run `sqlite3 {target} .recover > recovered.sql` "
            f"and load what it prints into a new database; once you no longer need it, delete {target}."
        )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def migrations(self) -> list[str]:
        """Names of the applied migrations (the schema version is their number)."""
        return applied(self.db)

    @property
    def schema_is_current(self) -> bool:
        return self.migrations == [m.__name__ for m in MIGRATIONS]

    # --- writing ----------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise PermissionError("this Store was opened read-only")
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _r(self, text: str | None) -> str | None:
        return None if text is None else self._redact(text)

    def record_suggestion(self, rec: SuggestionRecord) -> bool:
        """Save a suggestion that was shown (texts redacted). False, and nothing saved, when its
        document is excluded or the id exists already."""
        if rec.bound not in BOUNDS:
            raise ValueError(f"bound must be one of {BOUNDS}, not {rec.bound!r}")
        if self._excluded(rec.uri):
            return False
        row = (
            rec.id, rec.created_at, rec.uri, rec.language, rec.line, rec.character,
            self._r(rec.prompt), self._r(rec.prefix), self._r(rec.suffix), self._r(rec.suggestion),
            rec.model_version, rec.policy, rec.latency_ms, rec.bound,
        )  # fmt: skip
        with self._write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO suggestions (id, created_at, uri, language, line, character, prompt,"
                " prefix, suffix, suggestion, model_version, policy, latency_ms, bound)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return cur.rowcount == 1

    def mark_accepted(self, suggestion_id: str, accepted_text: str, source: str, at: float | None = None) -> bool:
        """Record an acceptance: the first time it was seen stays; the accepted text is the latest
        (partial accepts grow it); 'command' (the editor said so) wins over 'inferred'."""
        if source not in ACCEPT_SOURCES:
            raise ValueError(f"source must be one of {ACCEPT_SOURCES}, not {source!r}")
        with self._write() as c:
            cur = c.execute(
                "UPDATE suggestions SET accepted_at = COALESCE(accepted_at, ?),"
                " accept_source = CASE WHEN accept_source = 'command' THEN 'command' ELSE ? END,"
                " accepted_text = ? WHERE id = ?",
                (self._clock() if at is None else at, source, self._r(accepted_text), suggestion_id),
            )
            return cur.rowcount == 1

    def save_spans(self, spans: Iterable[SpanRecord]) -> int:
        """Save (insert or update) spans in flight; spans of unknown suggestions are skipped."""
        n = 0
        with self._write() as c:
            for s in spans:
                cur = c.execute(
                    "INSERT OR REPLACE INTO spans (suggestion_id, uri, start, length, text, kind, mode, units,"
                    " created_at, updated_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
                    " WHERE EXISTS (SELECT 1 FROM suggestions WHERE id = ?)",
                    (s.suggestion_id, s.uri, s.start, s.length, self._r(s.text), s.kind, s.mode, s.units,
                     s.created_at, s.updated_at, s.suggestion_id),
                )  # fmt: skip
                n += cur.rowcount
        return n

    def delete_span(self, suggestion_id: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM spans WHERE suggestion_id = ?", (suggestion_id,))

    def record_outcome(
        self,
        suggestion_id: str,
        kind: str,
        final_text: str,
        settle_reason: str,
        settled_at: float | None = None,
    ) -> Outcome | None:
        """Save a settled outcome durably (its own synchronous=FULL transaction) and drop its span.
        The cost is computed from the stored suggestion and the redacted final text. None when the
        suggestion is unknown (forgotten, excluded) or already has an outcome (the first one stays)."""
        if kind not in OUTCOME_KINDS:
            raise ValueError(f"kind must be one of {OUTCOME_KINDS}, not {kind!r}")
        if settle_reason not in SETTLE_REASONS:
            raise ValueError(f"settle_reason must be one of {SETTLE_REASONS}, not {settle_reason!r}")
        final = self._r(final_text) or ""
        at = self._clock() if settled_at is None else settled_at
        with self._lock:
            self.conn.execute("PRAGMA synchronous=FULL")
            try:
                with self._write() as c:
                    row = c.execute("SELECT suggestion FROM suggestions WHERE id = ?", (suggestion_id,)).fetchone()
                    if row is None:
                        c.execute("DELETE FROM spans WHERE suggestion_id = ?", (suggestion_id,))
                        return None
                    cost = edit_cost(row[0], final)
                    cur = c.execute(
                        "INSERT OR IGNORE INTO outcomes (suggestion_id, kind, final_text, cost, char_cost,"
                        " settled_at, settle_reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (suggestion_id, kind, final, cost.cost, cost.char_cost, at, settle_reason),
                    )
                    c.execute("DELETE FROM spans WHERE suggestion_id = ?", (suggestion_id,))
                    if cur.rowcount != 1:
                        return None
            finally:
                self.conn.execute("PRAGMA synchronous=NORMAL")
        return Outcome(suggestion_id, kind, final, cost.cost, cost.char_cost, at, settle_reason)

    # --- settings ---------------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def paused(self) -> bool:
        """Whether the user paused suggestions and capture (kept across restarts)."""
        return bool(self.get_setting("paused", False))

    @paused.setter
    def paused(self, value: bool) -> None:
        self.set_setting("paused", bool(value))

    # --- reading ----------------------------------------------------------------------------------

    def suggestion(self, suggestion_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next(self.db.query("SELECT * FROM suggestions WHERE id = ?", [suggestion_id]), None)

    def outcome(self, suggestion_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next(self.db.query("SELECT * FROM outcomes WHERE suggestion_id = ?", [suggestion_id]), None)

    def open_spans(self) -> list[SpanRecord]:
        """Spans saved by a server that stopped before settling them."""
        with self._lock:
            rows = self.db.query(
                "SELECT suggestion_id, uri, start, length, text, kind, mode, units, created_at, updated_at"
                " FROM spans ORDER BY created_at"
            )
            return [SpanRecord(**r) for r in rows]

    def triples(
        self, since: float | None = None, until: float | None = None, kinds: Iterable[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Settled (x, y, y′) triples in settling order: every suggestions column, then kind,
        final_text, cost, char_cost, settled_at, settle_reason. Filters on the suggestion's time.
        Lazy: iterate it on the thread that uses the store."""
        return reports.triples(self.db, since, until, kinds)

    def stats(self) -> dict[str, Any]:
        """Counts, acceptance rate and mean edit cost: overall, by language, policy, day and kind."""
        with self._lock:
            return reports.stats(self.db)

    def export(
        self,
        path: str | os.PathLike[str],
        fmt: str = "sft",
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> int:
        """Write settled triples as JSONL that trl reads as it is (file mode 0600); returns rows.
        "sft": {"prompt", "completion" = y′}; "preference": {"prompt", "chosen" = y′, "rejected" = y},
        rows where y′ == y skipped (no preference in them). Both keep suggestion_id, kind, cost,
        char_cost, language, policy, model_version, created_at as extra keys."""
        with self._lock:
            return reports.export(self.db, Path(path), fmt, since=since, until=until, kinds=kinds)

    # --- forgetting -------------------------------------------------------------------------------

    def forget(
        self,
        *,
        everything: bool = False,
        since: float | None = None,
        until: float | None = None,
        folder: str | os.PathLike[str] | None = None,
    ) -> int:
        """Delete suggestions (with their outcomes and spans): all of them, or those created in
        [since, until), or those from documents under `folder` (a path or file URI), or both of the
        last two. Then VACUUM and truncate the WAL so the deleted text is gone from the files.
        Returns the number of suggestions deleted."""
        if everything and (since is not None or until is not None or folder is not None):
            raise ValueError("everything=True takes no other filter")
        if not everything and since is None and until is None and folder is None:
            raise ValueError("say what to forget: everything=True, since/until, or folder")
        with self._lock:
            ids = reports.select_ids(self.db, since=since, until=until, folder=folder, everything=everything)
            n = self._delete(ids)
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def prune(self, retention_days: float | None, now: float | None = None) -> int:
        """Delete suggestions older than `retention_days` (None or <= 0 keeps everything) and give
        free pages back to the file system. Returns the number deleted."""
        if not retention_days or retention_days <= 0:
            return 0
        cutoff = (self._clock() if now is None else now) - retention_days * 86400
        with self._lock:
            n = self._delete(reports.select_ids(self.db, until=cutoff))
            self.conn.execute("PRAGMA incremental_vacuum")
        return n

    def _delete(self, ids: list[str]) -> int:
        with self._write() as c:
            c.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
            c.execute("DELETE FROM doomed")
            c.executemany("INSERT OR IGNORE INTO doomed (id) VALUES (?)", ((i,) for i in ids))
            for table, column in (("outcomes", "suggestion_id"), ("spans", "suggestion_id"), ("suggestions", "id")):
                c.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT id FROM doomed)")
            c.execute("DELETE FROM doomed")
        return len(set(ids))
