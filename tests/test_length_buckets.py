"""Length-bucketed training order: micro-batches of rows of about one length, in a random order — and
the SFT and DPO trainers really draw their batches from it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)
from training.data import Edit
from training.lora import LengthBuckets


def _padding_share(lengths: list[int], order: list[int], b: int) -> float:
    batches = [order[i : i + b] for i in range(0, len(order), b)]
    padded = sum(max(lengths[i] for i in x) * len(x) for x in batches)
    return 1 - sum(lengths) / padded


def test_buckets_hold_rows_of_one_length_in_a_random_order():
    rng = random.Random(3)
    lengths = [rng.randint(20, 400) for _ in range(101)]
    sampler = LengthBuckets(lengths, micro_batch=2, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(101))  # each row once an epoch
    assert first != second  # a new order each epoch
    shuffled = list(range(101))
    rng.shuffle(shuffled)
    assert _padding_share(lengths, first, 2) < 0.05 < 0.15 < _padding_share(lengths, shuffled, 2)
    # the micro-batches are not served from short to long (or long to short)
    tops = [max(lengths[i] for i in first[j : j + 2]) for j in range(0, 100, 2)]
    rise = sum(b > a for a, b in zip(tops, tops[1:])) / (len(tops) - 1)
    assert 0.25 < rise < 0.75, rise  # sorted: near 1 (or 0); shuffled: near a half
    assert len(first) % 2 == 1 and lengths[first[-1]] >= sorted(lengths)[90]  # the odd row out comes last
    assert LengthBuckets(lengths, 2, seed=0).__iter__().__next__() == first[0]  # seeded


def _edits(n: int) -> list[Edit]:
    out = []
    for i in range(n):
        prompt = "def f():\n" + "    x = 1\n" * (1 + 9 * (i % 5)) + "    "
        out.append(Edit(id=f"e{i:03d}", prompt=prompt, prefix=prompt, suggestion="return x", final="return x + 1",
                        cost=1.0, char_cost=1.0, language="python", created_at=float(i), kind="edited"))  # fmt: skip
    return out


@pytest.mark.parametrize("learner", ["sup", "pref"])
def test_trainers_draw_their_micro_batches_from_the_buckets(learner, tiny_model_dir, tmp_path):  # noqa: F811
    from training.pref import PrefConfig, dpo_trainer
    from training.sup import SupConfig, sft_trainer

    edits = _edits(20)
    fast = dict(r=4, alpha=8, batch_size=2, grad_accum=1, max_prompt_tokens=256, max_completion_tokens=8)
    if learner == "sup":
        trainer, _ = sft_trainer(tiny_model_dir, edits, SupConfig(**fast), Path(tmp_path), None)
    else:
        trainer, _ = dpo_trainer(tiny_model_dir, edits, PrefConfig(**fast), Path(tmp_path), None)
    assert isinstance(trainer._get_train_sampler(), LengthBuckets)
    batches = list(trainer.get_train_dataloader())
    # rows as trl collates them: SFT one per edit, DPO [chosen; rejected] for each pair
    assert sum(len(b["input_ids"]) for b in batches) == 20 * (1 if learner == "sup" else 2)
    # Five prompt lengths, four edits of each: in every micro-batch the rows share their prompt's
    # length (where a random order would pair different lengths and pad the shorter).
    scored = [b["completion_mask"] if "completion_mask" in b else (b["labels"] != -100).long() for b in batches]
    prompts = [{int(row.argmax()) for row in m} for m in scored]
    assert all(len(p) == 1 for p in prompts), prompts
