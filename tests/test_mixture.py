"""The Mixture ensemble: EM weights on a known answer, and one batched forward for K adapters."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)
from training.mixture import (
    BASE,
    MixtureDecoder,
    fit_mixture,
    fit_mixture_weights,
    load_policies,
    policy_logprobs,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on two cores that other work also uses are many times slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mixture_data(alpha, dists, tokens=4000, seed=0):
    """Tokens drawn from Σ α_k dists[k]; per edit, the (K, T) log-probabilities under each dist."""
    gen = torch.Generator().manual_seed(seed)
    dists = torch.tensor(dists, dtype=torch.float64)
    comp = torch.multinomial(torch.tensor(alpha, dtype=torch.float64), tokens, replacement=True, generator=gen)
    draws = torch.stack([torch.multinomial(dists[c], 1, generator=gen)[0] for c in comp])
    table = dists.log()[:, draws]  # (K, tokens)
    return list(table.split(40, dim=1))  # as if from 100 edits of 40 tokens


P1 = [0.50, 0.30, 0.10, 0.05, 0.03, 0.02]
P2 = [0.05, 0.05, 0.10, 0.20, 0.30, 0.30]
P3 = [0.02, 0.03, 0.60, 0.30, 0.03, 0.02]


def test_em_recovers_known_weights():
    fit = fit_mixture(_mixture_data([0.3, 0.7], [P1, P2]), ["sup", "pref"], prior=0.0)
    assert fit.converged
    assert fit.weights[0] == pytest.approx(0.3, abs=0.05)
    assert sum(fit.weights) == pytest.approx(1.0)
    assert fit.tokens == 4000
    # The mixture explains the held-out tokens better than either policy alone.
    assert fit.loglik > max(fit.policy_loglik.values())


def test_em_weights_are_interior_and_a_useless_policy_gets_little():
    fit = fit_mixture(_mixture_data([0.5, 0.5, 0.0], [P1, P2, P3], seed=1), ["sup", "pref", "cost"])
    w = fit.by_name
    assert w["sup"] == pytest.approx(0.5, abs=0.07) and w["pref"] == pytest.approx(0.5, abs=0.07)
    assert 0 < w["cost"] < 0.08  # the pseudo-count keeps it above zero


def test_em_never_lowers_the_likelihood():
    data = _mixture_data([0.2, 0.8], [P1, P3], seed=2)
    trace = [fit_mixture(data, ["a", "b"], max_iter=i, tol=0.0).loglik for i in range(1, 15)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(trace))


def test_dict_interface_and_validation():
    data = _mixture_data([0.3, 0.7], [P1, P2], tokens=800)
    by_name = {"sup": [row[0].tolist() for row in data], "pref": [row[1].tolist() for row in data]}
    weights = fit_mixture_weights(by_name)
    assert list(weights) == ["sup", "pref"]
    assert weights == pytest.approx(fit_mixture(data, ["sup", "pref"]).by_name)
    with pytest.raises(ValueError):
        fit_mixture_weights({"sup": [[-1.0, -2.0]], "pref": [[-1.0]]})
    assert fit_mixture([], ["a", "b"]).weights == [0.5, 0.5]  # no validation tokens: uniform


# --- the batched forward, on a tiny model with two adapters -------------------------------------------


@dataclass
class _Edit:
    prompt: str
    final: str


@pytest.fixture(scope="module")
def two_adapters(tiny_model_dir, tmp_path_factory):
    """(base folder, {name: adapter folder}) with two different, non-zero LoRA adapters."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    adapters = {}
    for i, name in enumerate(("sup", "pref")):
        torch.manual_seed(10 + i)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        # init_lora_weights=False: random A and B, so each adapter changes the model from the start.
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
        peft.save_pretrained(root / name)
        adapters[name] = root / name
    return tiny_model_dir, adapters


EDITS = [
    _Edit("def add(a, b):\n    ", "return a + b"),
    _Edit("The meeting is moved to", " Thursday at noon."),
    _Edit("", "hello"),
]


def _separate(model, tokenizer, name, edit):
    """log π(y′_t) from a forward with only `name` active (or the adapters disabled)."""
    from training import encode

    p = encode.prompt_ids(tokenizer, edit.prompt, 384)
    c = encode.completion_ids(tokenizer, edit.final, 128)
    ids = torch.tensor([p + c])
    if name == BASE:
        with model.disable_adapter():
            logits = model(input_ids=ids).logits
    else:
        model.set_adapter(name)
        logits = model(input_ids=ids).logits
    lp = torch.log_softmax(logits[0, len(p) - 1 : -1], -1)
    return lp.gather(-1, torch.tensor(c)[:, None])[:, 0]


def test_batched_forward_equals_separate_forwards(two_adapters):
    base_dir, adapters = two_adapters
    model, tokenizer = load_policies(base_dir, adapters)
    names = [BASE, "sup", "pref"]
    batched = policy_logprobs(model, tokenizer, names, EDITS)
    with torch.no_grad():
        for edit, table in zip(EDITS, batched):
            for k, name in enumerate(names):
                assert torch.allclose(table[k], _separate(model, tokenizer, name, edit), atol=1e-4)
    assert not torch.allclose(batched[0][1], batched[0][2])  # the adapters do differ
    assert all(t.shape[1] >= 2 for t in batched)  # y′ tokens then end-of-text


def test_mixture_decoder_mixes_probabilities_in_one_pass(two_adapters):
    base_dir, adapters = two_adapters
    model, tokenizer = load_policies(base_dir, adapters)
    names, weights = [BASE, "sup", "pref"], [0.2, 0.5, 0.3]
    decoder = MixtureDecoder(model, names, weights)
    prompt = tokenizer("def add(a, b):", add_special_tokens=True)["input_ids"]
    seq = list(prompt)
    feed = list(prompt)
    with torch.no_grad():
        for _ in range(4):
            mixed = decoder.probs(feed)
            expected = torch.zeros_like(mixed)
            for w, name in zip(weights, names):
                ids = torch.tensor([seq])
                if name == BASE:
                    with model.disable_adapter():
                        logits = model(input_ids=ids).logits[0, -1]
                else:
                    model.set_adapter(name)
                    logits = model(input_ids=ids).logits[0, -1]
                expected += w * torch.softmax(logits, -1)
            assert torch.allclose(mixed, expected, atol=1e-5)
            token = int(mixed.argmax())
            seq.append(token)
            feed = [token]
    # All weight on one adapter: the mixture decodes exactly as that adapter alone.
    only = MixtureDecoder(model, names, [0.0, 0.0, 1.0]).generate(prompt, 6)
    model.set_adapter("pref")
    alone = []
    with torch.no_grad():
        ids = list(prompt)
        for _ in range(6):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            alone.append(token)
            ids.append(token)
    assert only == alone
    assert math.isclose(float(decoder.weights.sum()), 1.0, rel_tol=1e-6)
