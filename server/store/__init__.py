"""Redline's SQLite store: schema and migrations, the `Store` (the one writer), reports."""

from .records import ACCEPT_SOURCES, OUTCOME_KINDS, SETTLE_REASONS, Outcome, SpanRecord, SuggestionRecord, new_id
from .schema import MIGRATIONS, migrate, schema_version
from .store import CorruptDatabase, Store

__all__ = [
    "ACCEPT_SOURCES",
    "MIGRATIONS",
    "OUTCOME_KINDS",
    "SETTLE_REASONS",
    "CorruptDatabase",
    "Outcome",
    "SpanRecord",
    "Store",
    "SuggestionRecord",
    "migrate",
    "new_id",
    "schema_version",
]
