"""The database schema: append-only migrations applied in order by `migrate(db)`.

Never edit a migration that has shipped: add `m00N_...` after the last one. `_migrations` records the
name and time of each applied migration; the schema version is how many there are.
`tests/fixtures/store_m001.sql` freezes what m001 produced, to test upgrades from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[Migration] = []
MIGRATIONS_TABLE = "_migrations"


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["suggestions"].create(
        {
            "id": str,  # uuid4 hex
            "created_at": float,  # unix seconds
            "uri": str,
            "language": str,
            "line": int,
            "character": int,  # UTF-16 code units
            "prompt": str,  # the exact text the model saw
            "prefix": str,
            "suffix": str,
            "suggestion": str,  # y
            "model_version": str,
            "policy": str,
            "latency_ms": float,
            "accepted_at": float,  # NULL until accepted
            "accept_source": str,  # 'command' | 'inferred'
            "accepted_text": str,  # what was inserted: y or a prefix of it
        },
        pk="id",
        not_null={"created_at", "uri", "suggestion"},
    )
    db["outcomes"].create(
        {
            "suggestion_id": str,
            "kind": str,  # accepted | edited | partial | rejected_typed | deleted
            "final_text": str,  # y′
            "cost": float,  # word-level edit cost
            "char_cost": float,
            "settled_at": float,
            "settle_reason": str,
        },
        pk="suggestion_id",
        foreign_keys=[("suggestion_id", "suggestions", "id")],
        not_null={"kind", "final_text", "settled_at"},
    )
    db["spans"].create(
        {
            "suggestion_id": str,
            "uri": str,
            "start": int,  # UTF-16 offset in the document
            "length": int,  # UTF-16 code units
            "text": str,
            "kind": str,  # 'accepted' | 'typed'
            "mode": str,  # 'code' | 'prose'
            "units": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="suggestion_id",
        foreign_keys=[("suggestion_id", "suggestions", "id")],
        not_null={"uri", "start", "length", "text", "kind"},
    )
    db["settings"].create({"key": str, "value": str}, pk="key")  # value: JSON


@migration
def m002_indexes(db: sqlite_utils.Database) -> None:
    """For statistics by day, forgetting by time or folder, and exports in settling order."""
    db["suggestions"].create_index(["created_at"], index_name="idx_suggestions_created_at")
    db["suggestions"].create_index(["uri"], index_name="idx_suggestions_uri")
    db["outcomes"].create_index(["settled_at"], index_name="idx_outcomes_settled_at")


@migration
def m003_bound(db: sqlite_utils.Database) -> None:
    """How the suggestion was bounded, so that validation cuts a policy's answer the same way:
    'editor' (NULL in older rows) — the editor's stop rules from the document around the cursor;
    'answer' — a whole answer, to end-of-text or the length limit; 'function' — a function body,
    up to the first line back at column 0."""
    db["suggestions"].add_column("bound", str)


def applied(db: sqlite_utils.Database) -> list[str]:
    if not db[MIGRATIONS_TABLE].exists():
        return []
    return [r["name"] for r in db.query(f"select name from {MIGRATIONS_TABLE} order by rowid")]


def schema_version(db: sqlite_utils.Database) -> int:
    return len(applied(db))


def migrate(db: sqlite_utils.Database, upto: int | None = None) -> list[str]:
    """Apply the migrations not yet applied (the first `upto` only, if given), each in its own
    transaction. Returns the names applied now."""
    if not db[MIGRATIONS_TABLE].exists():
        db[MIGRATIONS_TABLE].create({"name": str, "applied_at": float}, pk="name")
    done = set(applied(db))
    now_applied = []
    for fn in MIGRATIONS[:upto]:
        if fn.__name__ in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)", [fn.__name__, time.time()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        now_applied.append(fn.__name__)
    return now_applied
