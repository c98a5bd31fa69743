"""The runtime serves a model version's policies: each adapter, and the Mixture of them."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from server import versions
from server.runtime import Runtime, RuntimeConfig
from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)


def _adapter(model_dir, dest, seed):
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    with torch.no_grad():  # large updates, so that each policy answers differently
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(20)
    peft_model.save_pretrained(dest)
    return peft_model.eval()


@pytest.fixture
def version(tiny_model_dir, tmp_path):  # noqa: F811
    root = tmp_path / "versions"
    with versions.VersionWriter(base_model=tiny_model_dir, root=root) as w:
        peft_a = _adapter(tiny_model_dir, w.adapter_dir("sup"), 1)
        peft_b = _adapter(tiny_model_dir, w.adapter_dir("pref"), 2)
        w.write_json("validation.json", {
            "base": {"cost": 0.5, "served": True}, "sup": {"cost": 0.3, "served": True},
            "pref": {"cost": 0.4, "served": True}, "mixture": {"cost": 0.35, "served": True},
        })
        w.write_json("mixture.json", {"weights": {"sup": 0.7, "pref": 0.3}})
        v = w.commit()
    return v, peft_a, peft_b


@pytest.mark.parametrize("fast", [True, False])
def test_each_policy_answers_with_its_own_weights(tiny_model_dir, version, fast):  # noqa: F811
    v, peft_a, _ = version
    rt = Runtime(tiny_model_dir, RuntimeConfig(fast_decoder=fast))
    served = rt.use_version(v)
    assert set(served) == ({"base", "sup", "pref", "mixture"} if fast else {"base", "sup", "pref"})
    prompt = "def add(a, b):\n    return"
    ids = rt.encode(prompt)
    outs = {p: rt.generate(prompt, max_new_tokens=6, policy=p) for p in served}
    assert rt.version == v.id
    with torch.inference_mode():
        want = int(peft_a(torch.tensor([ids])).logits[0, -1].argmax())
    assert rt.encode(prompt + outs["sup"].text)[len(ids)] == want or outs["sup"].text.startswith(rt.decode([want]))
    assert len({outs[p].text for p in served}) >= 2  # the policies do differ
    # Switching back to a policy reuses nothing stale: the same prompt gives the same answer.
    assert rt.generate(prompt, max_new_tokens=6, policy="sup").text == outs["sup"].text
    assert rt.generate(prompt, max_new_tokens=6, policy="base").text == outs["base"].text


def test_mixture_is_the_weighted_token_mixture(tiny_model_dir, version):  # noqa: F811
    v, peft_a, peft_b = version
    rt = Runtime(tiny_model_dir)
    rt.use_version(v)
    prompt = "The weather today is"
    ids = rt.encode(prompt)
    with torch.inference_mode():
        pa = torch.softmax(peft_a(torch.tensor([ids])).logits[0, -1], -1)
        pb = torch.softmax(peft_b(torch.tensor([ids])).logits[0, -1], -1)
    want = int((0.7 * pa + 0.3 * pb).argmax())
    gen = rt.generate(prompt, max_new_tokens=1, policy="mixture")
    assert gen.text == rt.decode([want])


def test_unknown_policy_falls_back_to_base(tiny_model_dir, version):  # noqa: F811
    rt = Runtime(tiny_model_dir)
    base = rt.generate("x = ", max_new_tokens=4).text
    assert rt.generate("x = ", max_new_tokens=4, policy="cost").text == base
    rt.use_version(version[0])
    rt.use_version(None)  # back to the base model only
    assert rt.policies() == ["base"]


def test_prompt_lookup_drafts_change_nothing_but_the_step_count(default_model_dir):
    """Greedy output with drafting equals greedy output without it, on the real default model."""
    from server.postprocess import stop_at
    from server.prompt import build_context

    plain = Runtime(default_model_dir, RuntimeConfig(draft_tokens=0))
    drafting = Runtime(default_model_dir, RuntimeConfig(draft_tokens=4))
    code = open(__import__("json").__file__.replace("__init__.py", "decoder.py")).read()
    cuts = [code.index("def raw_decode") + 30, code.index("        obj, end = self.") + 20, 4000, len(code) - 200]
    saved = 0
    for cut in cuts:
        prompt = code[:cut]
        ctx = build_context(code, cut, "python")
        for rt in (plain, drafting):
            rt.reset_cache()
        a = plain.generate(prompt, max_new_tokens=24, stop=lambda t: stop_at(ctx, t))
        b = drafting.generate(prompt, max_new_tokens=24, stop=lambda t: stop_at(ctx, t))
        assert a.text == b.text and a.stop_reason == b.stop_reason
        saved += b.accepted_drafts
        # and again with the cache warm (the next keystroke)
        b2 = drafting.generate(prompt, max_new_tokens=24, stop=lambda t: stop_at(ctx, t))
        assert b2.text == a.text and b2.reused_tokens > 0
    assert saved > 0  # code repeats itself: some guesses were right
