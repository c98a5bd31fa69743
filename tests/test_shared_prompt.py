"""The prompt-sharing, compact-head forward gives trl's own log-probabilities and gradients.

Every pair [prompt + chosen; prompt + rejected] is run both ways on a tiny LoRA model — trl's fused
forward over the padded rows, and `training.shared_prompt` packing each pair into one sequence — and the
per-token log-probabilities, the loss and the adapter's gradients must agree. A mask that let the
rejected tokens see the chosen ones, or a position that did not restart after the prompt, fails here.
"""

from __future__ import annotations

import pytest

from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)


def _model(tiny_model_dir):  # noqa: F811
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from training.lora import load_base

    model, tokenizer = load_base(tiny_model_dir)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                            init_lora_weights=False))  # fmt: skip
    return peft, tokenizer


def _batch(tokenizer):
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from training import encode
    from training.encode import Lengths

    rows = [
        ("def add(a, b):\n    ", "return a + b", "return a+b  # add"),
        (
            "Summarise: the committee met twice and agreed on nothing.",
            "They met twice; no agreement.",
            "The committee met twice and agreed on nothing at all, again and again.",
        ),
        ("x", "y", "a much longer rejected answer than the chosen one"),
    ]
    examples = [encode.pref_example(tokenizer, p, c, r, Lengths()) for p, c, r in rows]
    batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(examples)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    assert batch["input_ids"].shape[0] == 6 and isinstance(labels, torch.Tensor)
    return batch, labels


def _run(model, batch, labels):
    model.zero_grad()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                fused_lm_head=True, use_cache=False)  # fmt: skip
    (out.loss + out.entropy.sum() * 0.0).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


@pytest.mark.parametrize("pairs", [True, False])
def test_matches_trls_forward(tiny_model_dir, pairs):  # noqa: F811
    import torch

    from training import shared_prompt

    model, tokenizer = _model(tiny_model_dir)
    batch, labels = _batch(tokenizer)
    ref, ref_grads = _run(model, batch, labels)
    assert shared_prompt.install(model.get_base_model(), pairs=pairs)
    if pairs:
        layout = shared_prompt.pair_layout(batch["input_ids"], batch["attention_mask"], labels)
        assert layout is not None and len(layout) == 3
    out, grads = _run(model, batch, labels)

    scored = labels[:, 1:] != -100
    torch.testing.assert_close(out.log_probs[scored], ref.log_probs[scored], atol=2e-5, rtol=1e-4)
    assert torch.equal(out.log_probs[~scored], torch.zeros_like(out.log_probs[~scored]))
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.entropy[scored], ref.entropy[scored], atol=1e-4, rtol=1e-4)
    assert torch.equal(out.is_top1[scored], ref.is_top1[scored])
    assert grads.keys() == ref_grads.keys() and len(grads) > 0
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-5, rtol=1e-3, msg=name)
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_pairs_that_do_not_share_a_prompt_are_not_packed(tiny_model_dir):  # noqa: F811
    from training import shared_prompt

    _, tokenizer = _model(tiny_model_dir)
    batch, labels = _batch(tokenizer)
    ids = batch["input_ids"].clone()
    ids[4, 0] = (int(ids[4, 0]) + 1) % 1000  # the second pair's rejected row no longer shares the prompt
    assert shared_prompt.pair_layout(ids, batch["attention_mask"], labels) is None
    assert shared_prompt.pair_layout(batch["input_ids"][:5], batch["attention_mask"][:5], labels[:5]) is None
