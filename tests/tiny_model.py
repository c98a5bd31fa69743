"""A tiny random Llama with the default model's real tokenizer: the right size for training tests.

Hidden size 64, 2 layers, 4 heads (2 key/value heads), the real 49,152-token vocabulary, so prompts,
completions and end-of-text handling are tokenized exactly as with the default model while an SFT step
takes a fraction of a second. It is saved as a normal Hugging Face folder (config, safetensors weights,
tokenizer files) that the trainer and the runtime load like any other.

Use the `tiny_model_dir` fixture (import it into a test module), or `build_tiny_model` directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def build_tiny_model(dest: Path, source_dir: Path, seed: int = 0, embedding_scale: float = 8.0) -> Path:
    """Save a tiny random Llama into `dest`, with the tokenizer of the model in `source_dir`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(source_dir, local_files_only=True)
    real = LlamaConfig.from_pretrained(source_dir, local_files_only=True)
    config = LlamaConfig(
        vocab_size=real.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=real.bos_token_id,
        eos_token_id=real.eos_token_id,
        pad_token_id=real.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        # The pad token is the end-of-text token here, and its row starts at zero: its logit would stay
        # 0 for ever and no adapter could teach the model to stop. Give it a row like any other.
        emb[config.pad_token_id].normal_(0.0, config.initializer_range)
        # With the usual 0.02 init, a 64-wide model's logits span about ±1: no token can ever be
        # likely, and no adapter can teach one. Wider (tied) embeddings give it a real model's range.
        emb.mul_(embedding_scale)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir, tmp_path_factory) -> Path:
    """A tiny random Llama folder, built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model", default_model_dir)
