"""A lean decoding step for Llama-family models (Llama, SmolLM, Qwen2, Mistral without sliding window).

Why: on a 2-core CPU, `transformers`' generic forward spends more time dispatching Python and
operators (masks, cache bookkeeping, concatenating the key/value cache at every step) than reading
weights. Decoding is bound by memory bandwidth only when the step does little else. This module runs
the same weights with:

- one matrix multiply for q, k and v, and one for the MLP's gate and up projections (fused weights);
- a preallocated key/value cache written in place (no concatenation, no reallocation);
- rotary embeddings from a precomputed table, applied to q and k together;
- logits for the last position only.

It is checked against the transformers model's logits in the tests; models it does not understand
(`supports` returns a reason) run on the generic path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED_TYPES = {"llama", "qwen2", "mistral"}


def supports(model) -> str | None:
    """None when this decoder can run `model`, else the reason it cannot."""
    cfg = model.config
    if cfg.model_type not in SUPPORTED_TYPES:
        return f"model type {cfg.model_type}"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if (rope.get("rope_type") or rope.get("type") or "default") != "default":
        return f"rope type {rope.get('rope_type')}"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act}"
    if getattr(model, "peft_config", None):
        return "unmerged adapters"
    return None


class FastDecoder:
    """Holds fused weights and a preallocated key/value cache for one sequence."""

    def __init__(self, model, max_len: int = 4096) -> None:
        reason = supports(model)
        if reason:
            raise ValueError(f"FastDecoder cannot run this model: {reason}")
        cfg = model.config
        inner = model.model
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.max_len = max_len
        dtype = inner.embed_tokens.weight.dtype
        self.dtype = dtype
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.lm_head = model.lm_head.weight.detach()
        self.layers = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]).detach()
            bias = None
            if att.q_proj.bias is not None:
                bias = torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]).detach()
            self.layers.append(
                (
                    layer.input_layernorm.weight.detach(),
                    qkv.contiguous(),
                    bias,
                    att.o_proj.weight.detach(),
                    layer.post_attention_layernorm.weight.detach(),
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach().contiguous(),
                    mlp.down_proj.weight.detach(),
                )
            )
        rope = getattr(cfg, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
        inv = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos = emb.cos().to(dtype)
        self.sin = emb.sin().to(dtype)
        n_layers = len(self.layers)
        self.k_cache = torch.zeros(n_layers, self.n_kv, max_len, self.head_dim, dtype=dtype)
        self.v_cache = torch.zeros_like(self.k_cache)
        self.length = 0  # tokens in the cache

    def crop(self, length: int) -> None:
        """Forget cached positions from `length` on (the rest is overwritten by later tokens)."""
        self.length = max(0, min(length, self.length))

    @torch.inference_mode()
    def forward(self, ids: list[int]) -> torch.Tensor:
        """Append `ids` to the sequence; return the next-token logits after the last of them."""
        T = len(ids)
        start = self.length
        if start + T > self.max_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds the cache of {self.max_len}")
        end = start + T
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        x = self.embed[torch.tensor(ids, dtype=torch.long)]  # (T, hidden)
        cos = self.cos[start:end].unsqueeze(1)  # (T, 1, hd)
        sin = self.sin[start:end].unsqueeze(1)
        half = hd // 2
        mask = None
        if T > 1:
            # Query i (at position start+i) sees keys 0..start+i.
            mask = torch.ones(T, end, dtype=torch.bool).tril(diagonal=start)
        for li, (ln1, wqkv, bqkv, wo, ln2, wgu, wd) in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), ln1, self.eps)
            qkv = F.linear(h, wqkv, bqkv).view(T, nh + 2 * nkv, hd)
            qk = qkv[:, : nh + nkv]
            rotated = torch.cat((-qk[..., half:], qk[..., :half]), dim=-1)
            qk = qk * cos + rotated * sin  # rotary embedding on q and k at once
            q = qk[:, :nh].transpose(0, 1)  # (nh, T, hd)
            self.k_cache[li, :, start:end] = qk[:, nh:].transpose(0, 1)
            self.v_cache[li, :, start:end] = qkv[:, nh + nkv :].transpose(0, 1)
            k = self.k_cache[li, :, :end]
            v = self.v_cache[li, :, :end]
            att = F.scaled_dot_product_attention(
                q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_mask=mask, enable_gqa=nkv != nh
            )
            x = x + F.linear(att[0].transpose(0, 1).reshape(T, nh * hd), wo)
            h = F.rms_norm(x, (x.shape[-1],), ln2, self.eps)
            gate, up = F.linear(h, wgu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, wd)
        self.length = end
        last = F.rms_norm(x[-1], (x.shape[-1],), self.norm, self.eps)
        return F.linear(last, self.lm_head)

    @property
    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decoding step reads: every layer, the final norm, the output head.

        The input embedding is a row lookup (one row per token), so it is not counted unless the
        output head shares it, in which case the head's read is what counts.
        """
        total = self.lm_head.numel() * self.lm_head.element_size() + self.norm.numel() * self.norm.element_size()
        for tensors in self.layers:
            total += sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return total
