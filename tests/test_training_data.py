"""Edits for training: loading from the store, filtering, the time split, trl rows, token cuts."""

from __future__ import annotations

import sqlite3

import pytest

from training import data, encode
from training.data import Edit, FilterConfig, SplitConfig


def edit(i: int, suggestion: str = "return x", final: str = "return x + 1", kind: str = "edited", **kw) -> Edit:
    defaults = dict(
        id=f"e{i:03d}", prompt=kw.pop("prompt", f"def f{i}(x):\n    "), suggestion=suggestion, final=final,
        cost=0.5, char_cost=0.5, language="python", uri=f"file:///p/m{i}.py", created_at=1000.0 + i, kind=kind,
    )  # fmt: skip
    defaults.update(kw)
    return Edit(**defaults)


# --- filtering: one row per reason, and the edits that must stay ------------------------------------

FILTER_CASES = [
    # (description, edit, expected reason or None)
    ("a small edit stays", edit(1), None),
    ("accepted unchanged stays", edit(2, final="return x", kind="accepted"), None),
    ("kind deleted", edit(3, final="", kind="deleted"), "deleted"),
    ("an empty y′ after an edit", edit(4, final="   \n", kind="edited"), "deleted"),
    ("accepted, then rewritten into something unrelated",
     edit(5, suggestion="return compute_total(items)", final="pass", kind="edited"), "unrelated"),
    ("a rejection whose typed text is unrelated stays (it is the target)",
     edit(6, suggestion="return compute_total(items)", final="pass", kind="rejected_typed"), None),
    ("an excluded flag", edit(7, excluded=True), "excluded"),
    ("a document under the default exclusions", edit(8, uri="file:///p/.env"), "excluded"),
    ("an over-long y′", edit(9, final="x" * 5000), "too_long"),
    ("an over-long y", edit(10, suggestion="y" * 5000, final="y" * 4999), "too_long"),
]  # fmt: skip


@pytest.mark.parametrize("description, e, reason", FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_drop_reason(description, e, reason):
    assert data.drop_reason(e) == reason


def test_filter_counts_every_reason_and_keeps_the_newest_duplicate():
    edits = [c[1] for c in FILTER_CASES]
    dup_old = edit(20, prompt="same prompt", suggestion="same", final="same final", created_at=2000.0)
    dup_new = edit(21, prompt="same prompt", suggestion="same", final="same final", created_at=3000.0)
    kept, report = data.filter_edits(edits + [dup_new, dup_old])
    ids = {e.id for e in kept}
    assert dup_new.id in ids and dup_old.id not in ids
    assert report.dropped == {"deleted": 2, "unrelated": 1, "duplicate": 1, "excluded": 2, "too_long": 2}
    assert report.total == len(edits) + 2 and report.kept == len(kept) == 4
    assert report.dropped_ids["duplicate"] == [dup_old.id]
    assert "4 of 12 edits kept" in str(report) and "1 duplicate" in str(report)


def test_similarity_threshold_is_configurable():
    e = edit(1, suggestion="return compute_total(items)", final="pass")
    assert data.drop_reason(e, FilterConfig(min_similarity=0.0)) is None
    assert data.drop_reason(edit(2), FilterConfig(min_similarity=0.99)) == "unrelated"


# --- splitting ----------------------------------------------------------------------------------------

SPLIT_CASES = [
    # (edits, config, expected validation size)
    (40, SplitConfig(), 8),  # a fifth
    (10, SplitConfig(), 4),  # at least min_val
    (6, SplitConfig(), 3),  # never more than half
    (1000, SplitConfig(max_val=50), 50),
    (0, SplitConfig(), 0),
]


@pytest.mark.parametrize("n, cfg, n_val", SPLIT_CASES)
def test_split_sizes(n, cfg, n_val):
    train, val = data.split_edits([edit(i) for i in range(n)], cfg)
    assert len(val) == n_val and len(train) == n - n_val


def test_split_is_by_time_and_deterministic():
    import random

    edits = [edit(i, created_at=float(i)) for i in range(30)]
    shuffled = edits[:]
    random.Random(1).shuffle(shuffled)
    train, val = data.split_edits(shuffled)
    assert max(e.created_at for e in train) < min(e.created_at for e in val)
    assert [e.id for e in val] == [e.id for e in edits[-len(val) :]]
    assert data.split_edits(list(reversed(edits))) == (train, val)


# --- rows ---------------------------------------------------------------------------------------------


def test_rows_use_the_stored_prompt_unchanged():
    prompt = "<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n<|fim_middle|>"
    edits = [edit(1, prompt=prompt), edit(2, final="return x", kind="accepted")]
    assert data.make_sft_rows(edits) == [
        {"prompt": prompt, "completion": "return x + 1"},
        {"prompt": edits[1].prompt, "completion": "return x"},
    ]
    assert data.make_pref_rows(edits) == [{"prompt": prompt, "chosen": "return x + 1", "rejected": "return x"}]
    assert len(data.make_pref_rows(edits, include_ties=True)) == 2


def test_too_few_edits_message():
    with pytest.raises(data.TooFewEdits, match=r"^SUP needs at least 8 edits, have 3\.$"):
        data.require("sup", 8, 3)
    with pytest.raises(data.TooFewEdits, match=r"PREF needs at least 8 edits, have 2 \(edits where"):
        data.require("pref", 8, 2, "edits where y′ differs from y")
    data.require("sup", 8, 8)


# --- loading from the store ---------------------------------------------------------------------------


def test_load_edits_joins_settled_suggestions_read_only(tmp_path):
    from server.store import Store, SuggestionRecord

    db_path = tmp_path / "redline.db"
    with Store(db_path) as store:
        for i, (y, y2, kind) in enumerate([("return x", "return x + 1", "edited"), ("pass", "pass", "accepted")]):
            rec = SuggestionRecord(uri=f"file:///p/a{i}.py", suggestion=y, prompt=f"def a{i}():\n    ",
                                   prefix=f"def a{i}():\n    ", language="python", policy="base",
                                   model_version="base:m", created_at=100.0 - i)  # fmt: skip
            store.record_suggestion(rec)
            store.record_outcome(rec.id, kind, y2, "idle", settled_at=200.0 + i)
        store.record_suggestion(SuggestionRecord(uri="file:///p/b.py", suggestion="unsettled"))
    edits = data.load_edits(db_path)
    assert [(e.suggestion, e.final, e.kind) for e in edits] == [
        ("pass", "pass", "accepted"),  # created earlier: time order
        ("return x", "return x + 1", "edited"),
    ]
    assert edits[1].cost == pytest.approx(2 / 2) and edits[1].prefix == "def a0():\n    "
    assert [e.final for e in data.load_edits(db_path, limit=1)] == ["return x + 1"]
    conn = data.connect_readonly(db_path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM outcomes")
    conn.close()


def test_load_edits_without_a_database_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing has been captured"):
        data.load_edits(tmp_path / "missing.db")


# --- token cuts (the real tokenizer) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir, local_files_only=True)


def test_examples_are_tokenized_as_serving_reads_them(tokenizer):
    prompt, completion = "x = 1\n" * 200 + "def f(", "a, b):"
    lengths = encode.Lengths(max_prompt_tokens=16, max_completion_tokens=8)
    ex = encode.sft_example(tokenizer, prompt, completion, lengths)
    served = tokenizer(prompt, add_special_tokens=True)["input_ids"][-16:]  # what the runtime keeps
    assert ex["input_ids"][:16] == served
    comp = tokenizer(completion, add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][16:] == comp + [tokenizer.eos_token_id]
    assert ex["completion_mask"] == [0] * 16 + [1] * (len(comp) + 1)
    pair = encode.pref_example(tokenizer, prompt, completion, "x" * 200, lengths)
    assert pair["prompt_ids"] == served and len(pair["rejected_ids"]) == 8 + 1
    assert encode.prompt_ids(tokenizer, "", 16) == [tokenizer.eos_token_id]
