"""The lean decoding step computes what transformers computes, for the models it claims to support."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from server.fast_decoder import FastDecoder, supports


def _tiny(kind: str):
    torch.manual_seed(0)
    common = dict(
        vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**common)).eval()  # q/k/v with biases


def _check(model, ids, atol):
    dec = FastDecoder(model, max_len=len(ids) + 8)
    with torch.inference_mode():
        ref = model(torch.tensor([ids])).logits[0]
        # prefill in pieces, one token at a time, and after a crop (the server's cache reuse)
        split = len(ids) // 2
        torch.testing.assert_close(dec.forward(ids[:split]), ref[split - 1], atol=atol, rtol=1e-4)
        torch.testing.assert_close(dec.forward(ids[split : split + 1]), ref[split], atol=atol, rtol=1e-4)
        dec.crop(3)
        torch.testing.assert_close(dec.forward(ids[3:]), ref[-1], atol=atol, rtol=1e-4)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_matches_transformers_on_tiny_models(kind):
    model = _tiny(kind)
    assert supports(model) is None
    _check(model, list(range(1, 60)), atol=1e-4)


def test_matches_transformers_on_the_default_model(default_model_dir):
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    ids = list(range(100, 400, 3))
    _check(model, ids, atol=2e-3)


def test_refuses_what_it_does_not_understand():
    model = _tiny("llama")
    model.config.rope_parameters = {"rope_type": "yarn", "rope_theta": 10000.0}
    assert "rope type" in supports(model)
    with pytest.raises(ValueError, match="cannot run"):
        FastDecoder(model)
