"""Real text nobody on this project wrote: Python's standard library and the IteraTeR documents.

Used by the benchmarks and the evaluation harness. The shared data folder sits beside the project's
root (`../shared/data`); `REDLINE_SHARED_DATA` points elsewhere.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("REDLINE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def iterater_revisions(zip_path: Path | None = None) -> list[tuple[str, int, str, str]]:
    """(doc id, revision depth, text before, text after) for every revision of every IteraTeR
    file, in a stable order; the after text is empty where the file has none."""
    zip_path = zip_path or shared_data_dir() / "iterater-r3-eval.zip"
    if not zip_path.is_file():
        raise FileNotFoundError(
            f"{zip_path} is missing: the IteraTeR data ships in ../shared/data beside the project "
            "(or set REDLINE_SHARED_DATA)."
        )
    out = []
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            if "__MACOSX" in name or not name.endswith(".json"):
                continue
            data = json.loads(zf.read(name))
            if not isinstance(data, dict):
                continue
            for key in sorted(k for k in data if k.startswith("rev_depth_")):
                rev = data[key]
                if isinstance(rev, dict) and isinstance(rev.get("doc"), dict):
                    doc = rev["doc"]
                    doc_id = str(doc.get("doc_id", name)).split("-depth")[0]
                    out.append((doc_id, int(key.removeprefix("rev_depth_")), doc.get("before_revision") or "",
                                doc.get("after_revision") or ""))  # fmt: skip
    return out


def iterater_documents(zip_path: Path | None = None) -> list[tuple[str, str]]:
    """(doc id, original text) for each distinct IteraTeR document, in a stable order."""
    docs: dict[str, str] = {}
    for doc_id, depth, text, _ in iterater_revisions(zip_path):
        if depth == 0 and text.strip() and doc_id not in docs:
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


# A paragraph is prose when most of its tokens are plain words and nothing marks it as code or a
# doctest; an indented line after cleaning means a list, a table or an example block.
_WORDISH = re.compile(r"^[A-Za-z][A-Za-z'’-]*[.,;:!?)]*$")
# "name -- what it is", "mode: 'r' ..." or column-aligned lines: a definition list or a table.
_FIELD_LINE = re.compile(r"^\s*(?:\S+\s+--\s|[\w'\"*]+:(?:\s|$)|\S.*?\S {3,}\S)")


def _prose_paragraphs(doc: str, max_words: int) -> list[str]:
    """The leading prose paragraphs of a cleaned docstring, each joined into one line."""
    kept: list[str] = []
    words = 0
    for para in re.split(r"\n\s*\n", doc.strip()):
        lines = para.splitlines()
        tokens = para.split()
        if (
            not tokens
            or ">>>" in para
            or any(_FIELD_LINE.match(line) for line in lines)
            or any(line[:1].isspace() for line in lines)
            or sum(bool(_WORDISH.match(t)) for t in tokens) < 0.7 * len(tokens)
        ):
            break
        if words and words + len(tokens) > max_words:
            break
        kept.append(" ".join(tokens))
        words += len(tokens)
    while kept and kept[-1].endswith(":"):  # a heading for the example block that was cut
        kept.pop()
    return kept


@functools.lru_cache(maxsize=4)
def stdlib_docstrings(min_words: int = 40, max_words: int = 160) -> tuple[tuple[str, str], ...]:
    """(dotted name, prose) for the English docstrings of the standard library, in a stable order.

    Module, public function, public class and public method docstrings of `stdlib_python_files()`,
    cut to their leading prose paragraphs (doctests, indented blocks, definition lists and code-like
    paragraphs end the text), kept when at least `min_words` words remain; at most about `max_words`
    (whole paragraphs). Duplicated texts are kept once. The set follows the running Python's library
    (344 texts from 3.11). Parsing the library takes 2-5 s; the result is cached.
    """
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in stdlib_python_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        nodes: list[tuple[str, ast.AST]] = [(path.stem, tree)]
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                nodes.append((f"{path.stem}.{node.name}", node))
                if isinstance(node, ast.ClassDef):
                    nodes.extend(
                        (f"{path.stem}.{node.name}.{m.name}", m)
                        for m in node.body
                        if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")
                    )
        for name, node in nodes:
            doc = ast.get_docstring(node)  # type: ignore[arg-type]
            if not doc:
                continue
            text = "\n\n".join(_prose_paragraphs(doc, max_words))
            if len(text.split()) >= min_words and text not in seen:
                seen.add(text)
                out.append((name, text))
    return tuple(out)
