"""Real text nobody on this project wrote: Python's standard library and the IteraTeR documents.

Used by the benchmarks and the evaluation harness. The shared data folder sits beside the project's
root (`../shared/data`); `REDLINE_SHARED_DATA` points elsewhere.
"""

from __future__ import annotations

import json
import os
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("REDLINE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def iterater_documents(zip_path: Path | None = None) -> list[tuple[str, str]]:
    """(doc id, original text) for each distinct IteraTeR document, in a stable order."""
    zip_path = zip_path or shared_data_dir() / "iterater-r3-eval.zip"
    if not zip_path.is_file():
        raise FileNotFoundError(
            f"{zip_path} is missing: the IteraTeR data ships in ../shared/data beside the project "
            "(or set REDLINE_SHARED_DATA)."
        )
    docs: dict[str, str] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            if "__MACOSX" in name or not name.endswith(".json"):
                continue
            data = json.loads(zf.read(name))
            if not isinstance(data, dict):
                continue
            first = data.get("rev_depth_0")
            if isinstance(first, dict) and isinstance(first.get("doc"), dict):
                doc = first["doc"]
                doc_id = str(doc.get("doc_id", name)).split("-depth")[0]
                text = doc.get("before_revision") or ""
                if text.strip() and doc_id not in docs:
                    docs[doc_id] = text
    return sorted(docs.items())


def stdlib_python_files(limit: int | None = None) -> list[Path]:
    """Python source files of the standard library, in a stable order (tests and vendored code left out)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p
        for p in sorted(stdlib.glob("*.py"))
        if not p.name.startswith(("test", "_")) and 2_000 < p.stat().st_size < 200_000
    ]
    return files[:limit] if limit else files
