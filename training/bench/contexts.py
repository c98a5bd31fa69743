"""Contexts for the benchmark: what the model is asked, built from real text nobody on the project wrote.

A context is a plain dict. Every context has

- `id`: unique and stable (`"summary/iterater/2104.00550"`, `"humaneval/Python/0"`);
- `domain`: `"writing"` or `"code"`; `task`: `"summary"`, `"email"`, `"complete"` or `"custom"`;
- `prompt`: the exact text the model reads when no chat template is applied;
- `instruction` and `source`: the raw instruction and the text it is about, for a harness that wraps
  them in the model's chat template instead (`chat_message` joins them); `source` is also what the
  simulated users judge content against;
- `source_name`: where the text came from (`"iterater"`, `"stdlib"`, `"humaneval"`, or the file's
  stem), which the users' latent preferences are keyed by;
- `split_key`: what the train/online split hashes (the document, so that its summary and its email
  land in the same split).

Writing contexts (`summary`, `email`) cover the 30 IteraTeR documents (arXiv abstracts, Wikipedia,
news) and the English docstrings of Python's standard library (`training.corpora.stdlib_docstrings`).
Code contexts (`complete`) are the 164 HumanEvalPack Python problems: `prompt` is the signature and
docstring that the model continues with the function's body; `canonical_solution`, `buggy_solution`,
`test` and `entry_point` are kept for the users and the sandbox.

Prompts are short and literal so that a 135M instruction-tuned model follows them: the instruction
on one line, a blank line, the text, a blank line, and a cue (`Summary:`, `Email:`) to continue from.

Splits: a context is in `train` or `online` by a hash of its `split_key`, independent of the seed and
of which other contexts are loaded, so the two splits never share a document. The seed only orders
(and with `n`, samples) the contexts within a split.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training import corpora

SPLITS = ("train", "online", "all")
TRAIN_FRACTION = 0.5  # share of documents in the train split; the rest is for online rounds

SUMMARY_INSTRUCTION = "Summarise the following text in a few sentences."
EMAIL_INSTRUCTION = "Write a short email to a colleague about the following text."
CODE_INSTRUCTION = "Complete the following Python function."
_CUES = {"summary": "Summary:", "email": "Email:"}
_INSTRUCTIONS = {"summary": SUMMARY_INSTRUCTION, "email": EMAIL_INSTRUCTION}

#: Named context sets for `load_contexts`: name -> (tasks, writing sources).
WRITING_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "summary": (("summary",), ("iterater", "stdlib")),
    "summary-iterater": (("summary",), ("iterater",)),
    "summary-stdlib": (("summary",), ("stdlib",)),
    "email": (("email",), ("iterater", "stdlib")),
    "email-iterater": (("email",), ("iterater",)),
    "email-stdlib": (("email",), ("stdlib",)),
    "writing": (("summary", "email"), ("iterater", "stdlib")),
}
CODE_SETS = ("humaneval", "code")
NAMES = (*WRITING_SETS, *CODE_SETS)

# Every context built here, by prompt: a user handed only the prompt string finds the rest.
_BY_PROMPT: dict[str, dict[str, Any]] = {}


def writing_prompt(task: str, source: str) -> str:
    return f"{_INSTRUCTIONS[task][:-1]}:\n\n{source}\n\n{_CUES[task]}"


def chat_message(ctx: Mapping[str, Any]) -> str:
    """The user message to wrap in a chat template: the instruction and the text it is about."""
    if ctx.get("instruction"):
        return f"{ctx['instruction']}\n\n{ctx['source']}"
    return str(ctx["prompt"])


def _writing_documents(source_name: str) -> list[tuple[str, str, str]]:
    """(doc id, title, text) of one writing source."""
    if source_name == "iterater":
        return [(doc_id, doc_id, text.strip()) for doc_id, text in corpora.iterater_documents()]
    if source_name == "stdlib":
        return [(name, name, text) for name, text in corpora.stdlib_docstrings()]
    raise ValueError(f"unknown writing source {source_name!r}")


def writing_contexts(
    tasks: tuple[str, ...] = ("summary",), sources: tuple[str, ...] = ("iterater", "stdlib")
) -> list[dict[str, Any]]:
    """Summary and email contexts over the given sources, in a stable order."""
    out = []
    for source_name in sources:
        for doc_id, title, text in _writing_documents(source_name):
            for task in tasks:
                out.append(
                    {
                        "id": f"{task}/{source_name}/{doc_id}",
                        "domain": "writing",
                        "task": task,
                        "source_name": source_name,
                        "doc_id": doc_id,
                        "title": title,
                        "instruction": _INSTRUCTIONS[task],
                        "source": text,
                        "prompt": writing_prompt(task, text),
                        "split_key": f"{source_name}/{doc_id}",
                    }
                )
    return out


def humaneval_problems(path: Path | None = None) -> list[dict[str, Any]]:
    """The HumanEvalPack Python rows as shipped (164 problems)."""
    path = path or corpora.shared_data_dir() / "humanevalpack-python.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: HumanEvalPack ships in ../shared/data beside the project (or set REDLINE_SHARED_DATA)."
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def code_contexts(path: Path | None = None) -> list[dict[str, Any]]:
    """One `complete` context per HumanEval problem: the model writes the body after `prompt`."""
    out = []
    for row in humaneval_problems(path):
        out.append(
            {
                "id": f"humaneval/{row['task_id']}",
                "domain": "code",
                "task": "complete",
                "source_name": "humaneval",
                "doc_id": row["task_id"],
                "title": row["entry_point"],
                "instruction": CODE_INSTRUCTION,
                "source": row["prompt"],
                "prompt": row["prompt"],
                "entry_point": row["entry_point"],
                "canonical_solution": row["canonical_solution"],
                "buggy_solution": row.get("buggy_solution", ""),
                "test": row["test"],
                "split_key": f"humaneval/{row['task_id']}",
            }
        )
    return out


def read_jsonl_contexts(path: Path) -> list[dict[str, Any]]:
    """Contexts from any JSONL file whose rows have at least `id` and `prompt`.

    Missing fields are filled in: `domain` is "code" when the row has an `entry_point` (then `task`
    "complete"), else "writing"; `task` "custom"; `source` the prompt; `source_name` the file's stem;
    `split_key` the id.
    """
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or "id" not in row or "prompt" not in row:
            raise ValueError(f"{path}:{lineno}: a context needs at least 'id' and 'prompt'")
        ctx = dict(row)
        ctx["id"] = str(ctx["id"])
        code = "entry_point" in ctx
        ctx.setdefault("domain", "code" if code else "writing")
        ctx.setdefault("task", "complete" if code else "custom")
        ctx.setdefault("source", ctx["prompt"])
        ctx.setdefault("instruction", "")
        ctx.setdefault("source_name", path.stem)
        ctx.setdefault("split_key", ctx["id"])
        out.append(ctx)
    return out


def split_of(ctx: Mapping[str, Any], train_fraction: float = TRAIN_FRACTION) -> str:
    """ "train" or "online", from a hash of the context's `split_key` (its id when it has none)."""
    key = str(ctx.get("split_key") or ctx["id"])
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    return "train" if h < train_fraction else "online"


def load_contexts(
    path_or_name: str | Path,
    split: str = "all",
    n: int | None = None,
    seed: int | None = 0,
    train_fraction: float = TRAIN_FRACTION,
) -> list[dict[str, Any]]:
    """Contexts of a named set (`NAMES`) or a JSONL file, one split of them, shuffled by `seed`.

    `split` is "train", "online" or "all"; the first two are disjoint for every seed and `n`.
    `seed=None` keeps the stable order; `n` keeps the first n after shuffling.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    name = str(path_or_name)
    if name in WRITING_SETS:
        tasks, sources = WRITING_SETS[name]
        items = writing_contexts(tasks, sources)
    elif name in CODE_SETS:
        items = code_contexts()
    else:
        path = Path(path_or_name)
        if not path.is_file():
            raise FileNotFoundError(f"{name!r} is neither a context set ({', '.join(NAMES)}) nor a file")
        items = read_jsonl_contexts(path)
    ids = [c["id"] for c in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: context ids are not unique")
    if split != "all":
        items = [c for c in items if split_of(c, train_fraction) == split]
    if seed is not None:
        random.Random(seed).shuffle(items)
    if n is not None:
        items = items[:n]
    for c in items:
        _BY_PROMPT[c["prompt"]] = c  # the latest load wins
    return items


def as_context(context: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A context dict for whatever a harness hands a user: the dict itself, or a prompt string.

    A string is looked up among the contexts loaded so far (exactly, then as a part of a longer text,
    such as a prompt wrapped in a chat template). Failing that, a prompt in this module's layout
    (instruction, blank line, text, blank line, cue) is taken apart; any other string is its own
    source.
    """
    if isinstance(context, Mapping):
        return context
    text = str(context)
    found = _BY_PROMPT.get(text)
    if found is not None:
        return found
    for prompt, ctx in _BY_PROMPT.items():
        if len(prompt) > 40 and prompt in text:
            return ctx
    for task, cue in _CUES.items():
        head = f"{_INSTRUCTIONS[task][:-1]}:\n\n"
        start = text.find(head)
        end = text.rfind(f"\n\n{cue}")
        if start >= 0 and end > start:
            source = text[start + len(head) : end]
            return {
                "id": "",
                "domain": "writing",
                "task": task,
                "source_name": "",
                "instruction": _INSTRUCTIONS[task],
                "source": source,
                "prompt": text,
            }
    domain = "writing"
    if "def " in text:
        try:
            ast.parse(text)
            domain = "code"
        except SyntaxError:
            pass
    task = "complete" if domain == "code" else "custom"
    return {"id": "", "domain": domain, "task": task, "source_name": "", "source": text, "prompt": text}
