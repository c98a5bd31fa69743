"""The COST learner: cost heads on frozen features, pessimism, and the policy-gradient step."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest
import torch

from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)
from training import encode
from training.cost import (
    CostConfig,
    CostModel,
    cost_model_report,
    edit_features,
    greedy_predicted_cost,
    policy_step,
    sample_completions,
    train_cost,
)
from training.lora import load_base, peft_model


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on two cores that other work also uses are many times slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class _Edit:
    prompt: str
    suggestion: str
    final: str
    cost: float


SEED = 0
GOOD = "apple river stone cloud maple ocean candle forest silver garden".split()
BAD = "error broken failure crash wrong junk noise trash bug fault".split()


def _word_edits(n: int, seed: int) -> list[_Edit]:
    """Suggestions of 3-8 words; the user's cost is the share of words from a list they dislike."""
    rng = random.Random(seed)
    edits = []
    for i in range(n):
        share = rng.random()
        words = [rng.choice(BAD) if rng.random() < share else rng.choice(GOOD) for _ in range(rng.randint(3, 8))]
        y = " " + " ".join(words)
        kept = " " + " ".join(w for w in words if w in GOOD)
        edits.append(_Edit(f"Note {i % 7}: the list reads", y, kept, sum(w in BAD for w in words) / len(words)))
    return edits


def test_cost_heads_fit_held_out_costs_better_than_a_constant(tiny_model_dir):
    model, tokenizer = load_base(tiny_model_dir)
    cfg = CostConfig()
    train, val = _word_edits(60, 1), _word_edits(30, 2)
    x_train = edit_features(model, tokenizer, [(e.prompt, e.suggestion) for e in train], cfg)
    x_val = edit_features(model, tokenizer, [(e.prompt, e.suggestion) for e in val], cfg)
    assert x_train.shape == (60, model.config.hidden_size + 1)
    cm = CostModel.fit(x_train, [e.cost for e in train], heads=5, seed=0)
    report = cost_model_report(cm, x_val, [e.cost for e in val])
    assert report["mae"] < 0.5 * report["mae_constant"], report
    assert report["spearman"] > 0.8, report
    assert (cm.predict(x_val, "max") >= cm.predict(x_val, "mean") - 1e-12).all()
    assert cm.predict(x_val, "none").shape == (5, 30)


def test_pessimism_grows_away_from_the_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen)
    y = 0.5 + 0.2 * x[:, 0] + 0.02 * torch.randn(40, generator=gen)
    cm = CostModel.fit(x, y.tolist(), heads=8, ridge=(0.01, 0.1, 1.0), seed=3)
    near = torch.zeros(1, 3)
    far = torch.tensor([[0.0, 8.0, -8.0]])  # directions the data never varied much along
    gap = lambda f: float(cm.predict(f, "max") - cm.predict(f, "mean"))
    assert gap(far) > 3 * gap(near)
    assert float(cm.predict(torch.tensor([[-50.0, 0.0, 0.0]]), "max")) == 0.0  # costs never go negative


def test_cost_model_saves_and_loads(tmp_path):
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(1))
    cm = CostModel.fit(x, (x[:, 1] ** 2).tolist(), heads=3, meta={"base_model": "tiny"})
    cm.save(tmp_path / "cm")
    again = CostModel.load(tmp_path / "cm")
    assert torch.equal(cm.predict(x, "none"), again.predict(x, "none"))
    assert again.meta["base_model"] == "tiny" and again.meta["heads"] == 3
    assert json.loads((tmp_path / "cm" / "cost_model.json").read_text())["format"] == 1


def test_config_rejects_settings_that_cannot_work():
    with pytest.raises(ValueError):
        CostConfig(samples=1)  # no leave-one-out baseline
    with pytest.raises(ValueError):
        CostConfig(heads=0)
    with pytest.raises(ValueError):
        CostConfig(ridge=())


def _policy_logprobs(policy, prompt: list[int], new, lengths: list[int]):
    """The reference the learner's shared pass is held to: per-token log π of k completions from a
    prompt pass of their own (differentiable), zero after each one's end."""
    from training.cost import _completion_mask, _forward_completions, _token_logprobs

    logits, _ = _forward_completions(policy, prompt, new)
    return _token_logprobs(logits, new) * _completion_mask(new, lengths)


def _perturb(policy) -> None:
    """A non-zero adapter, so that the policy and the reference differ."""
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)


def test_sampling_and_scoring_from_one_prompt_pass(tiny_model_dir):
    """A policy step reads the prompt once, with gradients, for sampling and scoring: the same samples
    as sampling alone, the same log π and the same adapter gradient as scoring in a pass of its own."""
    from training.cost import sample_with_logprobs

    model, tokenizer = load_base(tiny_model_dir)
    policy = peft_model(model, CostConfig(max_prompt_tokens=64)).train()
    _perturb(policy)
    prompt = encode.prompt_ids(tokenizer, "Note 1: the list reads", 64)
    eos = {tokenizer.eos_token_id}
    new, lengths, lp = sample_with_logprobs(policy, prompt, 3, 6, eos, 1.0, torch.Generator().manual_seed(7))
    alone, alone_lengths = sample_completions(policy, prompt, 3, 6, eos, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(new, alone) and lengths == alone_lengths
    lora = [p for n, p in policy.named_parameters() if p.requires_grad]
    lp.sum().backward()
    shared = [p.grad.clone() for p in lora]
    policy.zero_grad()
    expect = _policy_logprobs(policy, prompt, new, lengths)
    expect.sum().backward()
    assert torch.allclose(lp, expect, atol=1e-5)
    assert any(g.abs().sum() > 0 for g in shared)
    for a, b in zip(shared, (p.grad for p in lora)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_lean_sampler_samples_what_the_generic_forward_samples(tiny_model_dir):
    """Sampling with the server's lean decoder (the adapter's live A and B per row, the prompt's cache
    copied from the step's prompt pass) draws the same completions from the same random numbers, and
    the log-probabilities the gradient uses are unchanged."""
    from training.cost import LeanSampler, sample_with_logprobs

    model, tokenizer = load_base(tiny_model_dir)
    cfg = CostConfig(max_prompt_tokens=64)
    sampler = LeanSampler.for_model(model, cfg)
    assert sampler is not None
    policy = peft_model(model, cfg).train()
    _perturb(policy)
    prompt = encode.prompt_ids(tokenizer, "def area(r):\n    return", 64)
    eos = {tokenizer.eos_token_id}
    lean = sample_with_logprobs(policy, prompt, 4, 8, eos, 1.0, torch.Generator().manual_seed(3), sampler)
    generic = sample_with_logprobs(policy, prompt, 4, 8, eos, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(lean[0], generic[0]) and lean[1] == generic[1]
    assert torch.allclose(lean[2], generic[2], atol=1e-5)
    greedy = sample_with_logprobs(policy, prompt, 2, 8, eos, 0.0, None, sampler)
    assert torch.equal(greedy[0], sample_completions(policy, prompt, 2, 8, eos, 0.0)[0])


def test_a_steps_prompts_sample_side_by_side(tiny_model_dir):
    """The lean sampler takes a step's prompts (of different lengths, left-padded) in one decoder: each
    prompt's greedy completions and log π are what that prompt alone gives through the generic forward,
    and sampled ones are drawn per prompt, ending at end-of-text."""
    from training.cost import LeanSampler, sample_many_with_logprobs, sample_with_logprobs

    model, tokenizer = load_base(tiny_model_dir)
    cfg = CostConfig(max_prompt_tokens=64)
    sampler = LeanSampler.for_model(model, cfg)
    policy = peft_model(model, cfg).train()
    _perturb(policy)
    prompts = [encode.prompt_ids(tokenizer, t, 64) for t in ("def area(r):\n    return", "Note: the list of all the items reads")]
    assert len(prompts[0]) != len(prompts[1])
    eos = {tokenizer.eos_token_id}
    from server.fast_decoder import FastDecoder

    steps, forward = [], FastDecoder.forward
    FastDecoder.forward = lambda self, ids, all_positions=False: steps.append(forward(self, ids, all_positions)) or steps[-1]
    try:
        together = list(sample_many_with_logprobs(policy, prompts, 2, 8, eos, 0.0, None, sampler))
    finally:
        FastDecoder.forward = forward
    for p, (prompt, (new, lengths, lp)) in enumerate(zip(prompts, together)):
        alone = sample_with_logprobs(policy, prompt, 2, 8, eos, 0.0, None)
        assert torch.equal(new, alone[0]) and lengths == alone[1]
        assert torch.allclose(lp, alone[2], atol=1e-5)
        # The lean decoder's next-token logits at every step are the policy's on that prompt alone.
        with torch.no_grad():
            for t, out in enumerate(steps[: lengths[0] - 1]):
                ref = policy(input_ids=torch.tensor([prompt + new[0, : t + 1].tolist()])).logits[0, -1]
                torch.testing.assert_close(out[2 * p], ref, atol=1e-4, rtol=1e-4)
    assert not torch.equal(together[0][0], together[1][0])
    drawn = list(sample_many_with_logprobs(policy, prompts, 4, 8, eos, 1.0, torch.Generator().manual_seed(5), sampler))
    for new, lengths, lp in drawn:
        assert new.shape == (4, max(lengths)) and lp.shape == new.shape
        assert all((lp[i, n:] == 0).all() for i, n in enumerate(lengths))


def test_shared_prompt_passes_equal_full_forwards(tiny_model_dir):
    """The learner reads each prompt once and repeats its cache for the k samples: the same numbers as
    k full forwards, and the same features as the logged suggestions' (the cost model's inputs)."""
    from training.cost import _frozen_pass

    model, tokenizer = load_base(tiny_model_dir)
    cfg = CostConfig(max_prompt_tokens=64)
    policy = peft_model(model, cfg).eval()
    _perturb(policy)
    prompt = encode.prompt_ids(tokenizer, "Note 1: the list reads", 64)
    eos = {tokenizer.eos_token_id}
    new, lengths = sample_completions(policy, prompt, 3, 5, eos, 1.0, torch.Generator().manual_seed(4))
    new[1, 2], lengths[1] = tokenizer.eos_token_id, 3  # one completion that ends early
    ref_lp, feats = _frozen_pass(policy, prompt, new, lengths, eos)
    lp = _policy_logprobs(policy, prompt, new, lengths)
    with torch.no_grad():
        for i, n in enumerate(lengths):
            ids = torch.tensor([prompt + new[i, :n].tolist()])
            full = torch.log_softmax(policy(input_ids=ids).logits[0, len(prompt) - 1 : -1], -1)
            expect = full.gather(-1, new[i, :n, None])[:, 0]
            assert torch.allclose(lp[i, :n], expect, atol=1e-5)
            assert (lp[i, n:] == 0).all()
            with policy.disable_adapter():
                full_ref = torch.log_softmax(policy(input_ids=ids).logits[0, len(prompt) - 1 : -1], -1)
            assert torch.allclose(ref_lp[i, :n], full_ref.gather(-1, new[i, :n, None])[:, 0], atol=1e-5)
            assert not torch.allclose(ref_lp[i, :n], lp[i, :n])
        text = " the river stone"
        known = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        _, sample_feats = _frozen_pass(policy, prompt, known, [known.shape[1]], eos)
        with policy.disable_adapter():
            logged = edit_features(policy, tokenizer, [("Note 1: the list reads", text)], cfg)
        assert torch.allclose(logged[0], sample_feats[0], atol=1e-5)
        assert feats[1][-1] == pytest.approx(torch.log1p(torch.tensor(2.0)))  # 2 text tokens, then the end


def test_policy_step_moves_the_adapter(tiny_model_dir):
    model, tokenizer = load_base(tiny_model_dir)
    cfg = CostConfig(samples=4, max_new_tokens=6, learning_rate=1e-2)
    policy = peft_model(model, cfg).eval()
    x = torch.randn(10, model.config.hidden_size + 1, generator=torch.Generator().manual_seed(0))
    cm = CostModel.fit(x, torch.rand(10, generator=torch.Generator().manual_seed(1)).tolist(), heads=2)
    before = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate)
    prompts = [encode.prompt_ids(tokenizer, "def f(x):", 64), encode.prompt_ids(tokenizer, "Dear team,", 64)]
    stats = policy_step(policy, optimizer, cm, prompts, {tokenizer.eos_token_id}, cfg, torch.Generator().manual_seed(0))
    assert set(stats) >= {"cost", "kl", "reward", "grad_norm"}
    moved = [n for n, p in policy.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert moved and all("lora_" in n for n in moved)
    # The base stays frozen: it is the KL reference.
    assert not any(p.requires_grad for n, p in policy.named_parameters() if "lora_" not in n)


def test_train_cost_lowers_the_cost_of_greedy_suggestions(tiny_model_dir, tmp_path):
    """A user who dislikes half of the vocabulary, including what the base model says greedily. The
    logged suggestions are the base model's own samples; the learner must find out from their costs
    which tokens the user dislikes and steer the policy's greedy suggestions away from them."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    _, tokenizer = load_base(tiny_model_dir)
    prompts = [f"Item {i}: the list reads" for i in range(12)]
    eos = {tokenizer.eos_token_id}

    def greedy(model, prompt):
        new, lengths = sample_completions(model, encode.prompt_ids(tokenizer, prompt, 64), 1, 6, eos, 0.0)
        return tokenizer.decode(new[0, : lengths[0]].tolist(), skip_special_tokens=True)

    emb = base.get_input_embeddings().weight.detach()
    greedy_ids = [i for p in prompts for i in tokenizer(greedy(base, p), add_special_tokens=False)["input_ids"]]
    direction = emb[greedy_ids].mean(0)
    bad = (emb @ direction) > 0  # the base's greedy tokens are on the bad side

    def true_cost(text: str) -> float:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return float(bad[ids].float().mean()) if ids else 0.0

    gen = torch.Generator().manual_seed(SEED)

    def logged(per_prompt):
        edits = []
        for prompt in prompts:
            ids = encode.prompt_ids(tokenizer, prompt, 64)
            new, lengths = sample_completions(base, ids, per_prompt, 6, eos, 1.0, gen)
            for row, n in zip(new.tolist(), lengths):
                y = tokenizer.decode(row[:n], skip_special_tokens=True)
                edits.append(_Edit(prompt, y, y, true_cost(y)))
        return edits

    train, val = logged(16), logged(2)
    events = []
    cfg = CostConfig(max_steps=20, batch_size=2, samples=4, max_new_tokens=6, learning_rate=1e-2, beta=0.01,
                     eval_prompts=6, max_prompt_tokens=64, seed=SEED)
    out = train_cost(tiny_model_dir, train, val, tmp_path / "cost", cfg, events.append)

    assert out == tmp_path / "cost" / "adapter"
    assert (out / "adapter_config.json").is_file()
    assert (tmp_path / "cost" / "cost_model" / "cost_model.safetensors").is_file()
    report = json.loads((tmp_path / "cost" / "cost_report.json").read_text())
    assert report["steps"] == 20 and len(report["curve"]) == 20
    assert [e["step"] for e in events if e["stage"] == "policy"] == list(range(1, 21))
    assert events[-1]["stage"] == "done"
    greedy_cost = report["greedy_pessimistic_cost"]
    assert greedy_cost["after"] < greedy_cost["before"], greedy_cost
    # What counts: the user's true cost of the greedy suggestions fell.
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out)).eval()
    with policy.disable_adapter():
        before = sum(true_cost(greedy(policy, p)) for p in prompts) / len(prompts)
    after = sum(true_cost(greedy(policy, p)) for p in prompts) / len(prompts)
    assert before > 0.9 and after < before - 0.3, (before, after)
    # The saved cost model reproduces the learner's figure.
    cm = CostModel.load(tmp_path / "cost" / "cost_model")
    again = greedy_predicted_cost(policy, tokenizer, cm, [e.prompt for e in val[:6]], cfg)
    assert again == pytest.approx(greedy_cost["after"], abs=1e-5)


def test_policy_steps_stay_within_the_budget():
    from training.cost import CostConfig, policy_steps

    assert policy_steps(CostConfig(), 16) == 8  # a pass over 16 contexts, two a step
    assert policy_steps(CostConfig(), 151) == 32  # past the budget: 32 steps, 64 of the 151 contexts
    assert policy_steps(CostConfig(step_budget=0), 151) == 76
    assert policy_steps(CostConfig(max_steps=5), 151) == 5
    with pytest.raises(ValueError, match="step_budget"):
        CostConfig(step_budget=-1)
