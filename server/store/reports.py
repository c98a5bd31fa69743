"""Queries over the store: triples for training, statistics, JSONL export, rows to forget."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from ..privacy import uri_to_path

EXPORT_FORMATS = ("sft", "preference")
#: Extra keys every exported row keeps next to the ones trl reads.
EXPORT_EXTRA_KEYS = ("suggestion_id", "kind", "cost", "char_cost", "language", "policy", "model_version", "created_at")


def _time_filter(since: float | None, until: float | None, kinds: Iterable[str] | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if since is not None:
        where.append("s.created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("s.created_at < ?")
        params.append(until)
    if kinds is not None:
        kinds = list(kinds)
        where.append(f"o.kind IN ({', '.join('?' * len(kinds))})")
        params += kinds
    return (" WHERE " + " AND ".join(where)) if where else "", params


def triples(
    db: sqlite_utils.Database, since: float | None = None, until: float | None = None, kinds: Iterable[str] | None = None
) -> Iterator[dict[str, Any]]:
    where, params = _time_filter(since, until, kinds)
    return db.query(
        "SELECT s.*, o.kind, o.final_text, o.cost, o.char_cost, o.settled_at, o.settle_reason"
        f" FROM outcomes o JOIN suggestions s ON s.id = o.suggestion_id{where}"
        " ORDER BY o.settled_at, s.id",
        params,
    )


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    n = row["suggestions"] or 0
    accepted = row["accepted"] or 0
    return {
        "suggestions": n,
        "accepted": accepted,
        "acceptance_rate": accepted / n if n else None,
        "outcomes": row["outcomes"] or 0,
        "mean_cost": row["mean_cost"],
        "mean_char_cost": row["mean_char_cost"],
    }


_AGGREGATES = (
    "COUNT(*) AS suggestions, SUM(s.accepted_at IS NOT NULL) AS accepted, COUNT(o.suggestion_id) AS outcomes,"
    " AVG(o.cost) AS mean_cost, AVG(o.char_cost) AS mean_char_cost"
)


def stats(db: sqlite_utils.Database) -> dict[str, Any]:
    """Overall figures plus the same by language, policy, local day (YYYY-MM-DD) and outcome kind.
    acceptance_rate = accepted / shown (None when nothing was shown); mean_cost is the mean
    word-level edit cost over settled outcomes of every kind (None when there are none)."""
    base = f"SELECT {{key}}{_AGGREGATES} FROM suggestions s LEFT JOIN outcomes o ON o.suggestion_id = s.id"
    out: dict[str, Any] = {"total": _summary(next(db.query(base.format(key=""))))}
    groups = {
        "by_language": "COALESCE(s.language, '')",
        "by_policy": "COALESCE(s.policy, '')",
        "by_day": "date(s.created_at, 'unixepoch', 'localtime')",
    }
    for name, expr in groups.items():
        rows = db.query(base.format(key=f"{expr} AS k, ") + " GROUP BY k ORDER BY k")
        out[name] = {r["k"]: _summary(r) for r in rows}
    out["by_kind"] = {
        r["kind"]: {"outcomes": r["n"], "mean_cost": r["mean_cost"], "mean_char_cost": r["mean_char_cost"]}
        for r in db.query(
            "SELECT kind, COUNT(*) AS n, AVG(cost) AS mean_cost, AVG(char_cost) AS mean_char_cost"
            " FROM outcomes GROUP BY kind ORDER BY kind"
        )
    }
    return out


def export_rows(rows: Iterable[dict[str, Any]], fmt: str) -> Iterator[dict[str, Any]]:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {EXPORT_FORMATS}, not {fmt!r}")
    for r in rows:
        extra = {"suggestion_id": r["id"], **{k: r[k] for k in EXPORT_EXTRA_KEYS[1:]}}
        if fmt == "sft":
            yield {"prompt": r["prompt"] or "", "completion": r["final_text"], **extra}
        elif r["final_text"] != r["suggestion"]:
            yield {"prompt": r["prompt"] or "", "chosen": r["final_text"], "rejected": r["suggestion"], **extra}


def export(
    db: sqlite_utils.Database,
    path: Path,
    fmt: str,
    *,
    since: float | None = None,
    until: float | None = None,
    kinds: Iterable[str] | None = None,
) -> int:
    """Write JSONL atomically (a temporary file in the same folder, then renamed), mode 0600."""
    rows = export_rows(triples(db, since, until, kinds), fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def _folder_prefix(folder: str | os.PathLike[str]) -> str:
    p = uri_to_path(os.fspath(folder)).rstrip("/")
    return p + "/"


def select_ids(
    db: sqlite_utils.Database,
    *,
    since: float | None = None,
    until: float | None = None,
    folder: str | os.PathLike[str] | None = None,
    everything: bool = False,
) -> list[str]:
    """Ids of the suggestions a forget/prune call covers. A folder matches documents under it
    (compared as decoded paths, so a file URI and a path name the same folder)."""
    if everything:
        return [r[0] for r in db.execute("SELECT id FROM suggestions")]
    where, params = _time_filter(since, until, None)
    rows = db.execute(f"SELECT s.id, s.uri FROM suggestions s{where}", params)
    if folder is None:
        return [r[0] for r in rows]
    prefix = _folder_prefix(folder)
    return [i for i, uri in rows if uri_to_path(uri).startswith(prefix)]
