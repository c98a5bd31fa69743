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


def _tiny_with_adapter(tmp_path, kind="llama", targets="all-linear", rslora=False):
    from peft import LoraConfig, get_peft_model

    base = _tiny(kind)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, use_rslora=rslora)
    peft_model = get_peft_model(_tiny(kind), cfg).eval()
    peft_model.save_pretrained(tmp_path / "adapter")
    return base, peft_model, tmp_path / "adapter"


@pytest.mark.parametrize("kind,targets,rslora", [("llama", "all-linear", False), ("qwen2", ["q_proj", "v_proj", "down_proj"], True)])
def test_merged_adapter_matches_peft(tmp_path, kind, targets, rslora):
    from server.fast_decoder import Weights
    from server.lora import load_adapter

    base, peft_model, folder = _tiny_with_adapter(tmp_path, kind, targets, rslora)
    weights = Weights(base)
    lora = load_adapter(folder, weights.shapes)
    ids = list(range(1, 40))
    with torch.inference_mode():
        want = peft_model(torch.tensor([ids])).logits[0, -1]
        plain = base(torch.tensor([ids])).logits[0, -1]
    dec = FastDecoder(weights, max_len=64, lora=lora)
    got = dec.forward(ids)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (want - plain).abs().max() > 1e-3  # the adapter does change the output
    # The base weights are untouched: a decoder without the adapter still gives the base logits.
    torch.testing.assert_close(FastDecoder(weights, max_len=64).forward(ids), plain, atol=1e-4, rtol=1e-4)


def test_policies_side_by_side_in_one_batch(tmp_path):
    from server.fast_decoder import Weights
    from server.lora import load_adapter

    base, peft_model, folder = _tiny_with_adapter(tmp_path)
    weights = Weights(base)
    lora = load_adapter(folder, weights.shapes)
    ids = list(range(5, 30))
    batch = FastDecoder(weights, max_len=64, row_loras=[None, lora])
    step1 = batch.forward(ids[:-1])
    step2 = batch.forward(ids[-1:])  # decoding continues from each row's own cache
    with torch.inference_mode():
        for out, pos in ((step1, -2), (step2, -1)):
            torch.testing.assert_close(out[0], base(torch.tensor([ids])).logits[0, pos], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out[1], peft_model(torch.tensor([ids])).logits[0, pos], atol=1e-4, rtol=1e-4)


def test_adapter_for_other_modules_is_refused(tmp_path):
    from peft import LoraConfig, get_peft_model

    from server.fast_decoder import Weights
    from server.lora import AdapterError, load_adapter

    model = get_peft_model(_tiny("llama"), LoraConfig(r=2, target_modules=["lm_head"])).eval()
    model.save_pretrained(tmp_path / "a")
    with pytest.raises(AdapterError, match="lm_head|does not serve"):
        load_adapter(tmp_path / "a", Weights(_tiny("llama")).shapes)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_rows_of_different_lengths_left_padded(kind):
    """Rows whose sequences differ in length decode side by side: each row's cache is filled after its
    padding, and its logits (every position, then steps of per-row tokens, then after dropping a row)
    are what the row alone gives."""
    model = _tiny(kind)
    seqs = [list(range(10, 40)), list(range(50, 62)), list(range(70, 91))]
    width = max(len(s) for s in seqs)
    batch = FastDecoder(model, max_len=width + 4, batch=3)
    batch.left_pad([width - len(s) for s in seqs])
    batch.forward(torch.tensor([[1] * (width - len(s)) + s for s in seqs]))  # padding tokens are never seen
    # ... the padding's keys and values hold whatever was computed there: overwrite them with noise
    for b, s in enumerate(seqs):
        batch.k_cache[:, b, :, : width - len(s)] = 1e3
    nxt = torch.tensor([[7, 8], [9, 10], [11, 12]])
    step = batch.forward(nxt, all_positions=True)
    with torch.inference_mode():
        for b, s in enumerate(seqs):
            ref = model(torch.tensor([s + nxt[b].tolist()])).logits[0, -2:]
            torch.testing.assert_close(step[b], ref, atol=1e-4, rtol=1e-4)
        batch.keep([2, 0])
        last = batch.forward(torch.tensor([[13], [14]]))
        for row, (b, tok) in enumerate(((2, 13), (0, 14))):
            ref = model(torch.tensor([seqs[b] + nxt[b].tolist() + [tok]])).logits[0, -1]
            torch.testing.assert_close(last[row], ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="one non-negative pad per row"):
        batch.left_pad([1])
