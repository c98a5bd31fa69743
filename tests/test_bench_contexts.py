"""Benchmark contexts: real documents and problems, prompts a small model can follow, disjoint splits."""

from __future__ import annotations

import json

import pytest

from training.bench import contexts
from training.bench.contexts import as_context, chat_message, load_contexts, split_of
from training.corpora import stdlib_docstrings

REQUIRED = ("id", "domain", "task", "prompt", "instruction", "source", "source_name", "split_key")


@pytest.mark.parametrize("name", contexts.NAMES)
def test_named_sets_have_every_field_and_unique_ids(name):
    items = load_contexts(name, seed=None)
    assert items
    for c in items:
        for key in REQUIRED:
            assert key in c, (name, key)
        assert c["source"].strip() and c["source"] in c["prompt"]
    assert len({c["id"] for c in items}) == len(items)


def test_writing_prompts_are_instruction_text_cue():
    summary = load_contexts("summary-iterater", seed=None)
    email = load_contexts("email-stdlib", seed=None)
    assert len(summary) == 30  # the IteraTeR documents
    c = summary[0]
    assert c["domain"] == "writing" and c["task"] == "summary" and c["source_name"] == "iterater"
    assert c["prompt"] == f"Summarise the following text in a few sentences:\n\n{c['source']}\n\nSummary:"
    assert chat_message(c) == f"{c['instruction']}\n\n{c['source']}"
    e = email[0]
    assert e["prompt"].startswith("Write a short email to a colleague") and e["prompt"].endswith("Email:")


def test_code_contexts_keep_what_the_sandbox_and_users_need():
    items = load_contexts("humaneval", seed=None)
    assert len(items) == 164
    c = items[0]
    assert c["id"] == "humaneval/Python/0" and c["domain"] == "code" and c["task"] == "complete"
    assert c["prompt"].rstrip().endswith('"""') and f"def {c['entry_point']}(" in c["prompt"]
    for key in ("canonical_solution", "buggy_solution", "test", "entry_point"):
        assert c[key]


@pytest.mark.parametrize("name", ["summary", "writing", "humaneval"])
def test_splits_are_disjoint_cover_everything_and_ignore_the_seed(name):
    everything = {c["id"] for c in load_contexts(name, "all", seed=None)}
    train = {c["id"] for c in load_contexts(name, "train", seed=1)}
    online = {c["id"] for c in load_contexts(name, "online", seed=2)}
    assert train and online and not train & online
    assert train | online == everything
    assert {c["id"] for c in load_contexts(name, "train", seed=7)} == train
    # Roughly half each way.
    assert 0.3 < len(train) / len(everything) < 0.7


def test_a_document_and_its_tasks_share_a_split():
    both = load_contexts("writing", seed=None)
    by_doc = {}
    for c in both:
        by_doc.setdefault(c["split_key"], set()).add(split_of(c))
    assert all(len(s) == 1 for s in by_doc.values())
    assert {c["task"] for c in both} == {"summary", "email"}


def test_seed_orders_and_n_samples_deterministically():
    a = [c["id"] for c in load_contexts("summary", "online", n=10, seed=3)]
    b = [c["id"] for c in load_contexts("summary", "online", n=10, seed=3)]
    c = [c["id"] for c in load_contexts("summary", "online", n=10, seed=4)]
    assert a == b and len(a) == 10 and a != c
    stable = [c["id"] for c in load_contexts("summary", "online", seed=None)]
    every = [c["id"] for c in load_contexts("summary", "all", seed=None)]
    assert stable == [i for i in every if i in set(stable)]  # seed=None: the stable order


def test_jsonl_contexts_fill_in_defaults(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"id": 1, "prompt": "Summarise: cats sleep a lot."},
        {"id": "f", "prompt": "def f(x):\n", "entry_point": "f"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    items = load_contexts(str(path), seed=None)
    assert [c["id"] for c in items] == ["1", "f"]
    assert items[0]["domain"] == "writing" and items[0]["task"] == "custom"
    assert items[0]["source"] == rows[0]["prompt"] and items[0]["source_name"] == "mine"
    assert items[1]["domain"] == "code" and items[1]["task"] == "complete"
    train = load_contexts(path, "train", seed=None)
    online = load_contexts(path, "online", seed=None)
    assert len(train) + len(online) == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "no id"}) + "\n")
    with pytest.raises(ValueError, match="id"):
        load_contexts(bad)
    with pytest.raises(FileNotFoundError):
        load_contexts("no-such-set-or-file")
    with pytest.raises(ValueError):
        load_contexts("summary", split="test")


def test_a_prompt_string_finds_its_context():
    c = load_contexts("email-iterater", seed=None)[0]
    assert as_context(c["prompt"]) == c
    # Wrapped in a chat template, it is still found.
    assert as_context(f"<|im_start|>user\n{c['prompt']}<|im_end|>\n<|im_start|>assistant\n") == c
    # A prompt in the same layout that was never loaded is taken apart.
    parsed = as_context("Summarise the following text in a few sentences:\n\nCats sleep.\n\nSummary:")
    assert parsed["task"] == "summary" and parsed["source"] == "Cats sleep."
    assert as_context("def f(x):\n    return x\n")["domain"] == "code"
    assert as_context("just some text")["source"] == "just some text"


def test_stdlib_docstrings_are_prose():
    docs = stdlib_docstrings()
    assert len(docs) > 200
    names = [n for n, _ in docs]
    assert len(set(names)) == len(names)
    for _, text in docs:
        assert ">>>" not in text
        assert len(text.split()) >= 40
        assert len(text.split()) <= 400
