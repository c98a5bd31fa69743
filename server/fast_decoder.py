"""A lean decoding step for Llama-family models (Llama, SmolLM, Qwen2, Mistral without sliding window).

Why: on a 2-core CPU, `transformers`' generic forward spends more time dispatching Python and
operators (masks, cache bookkeeping, concatenating the key/value cache at every step) than reading
weights. Decoding is bound by memory bandwidth only when the step does little else. This module runs
the same weights with:

- one matrix multiply for q, k and v, and one for the MLP's gate and up projections (fused weights);
- the matrices stored transposed (in × out, contiguous), multiplied as `x @ W`: for one row this
  build's matrix-vector product read 19 GB/s that way against 11.5 GB/s for `F.linear(x, W)` on the
  out × in layout (`benchmarks/decode_rows.py`), and one row is what serving decodes;
- a preallocated key/value cache written in place (no concatenation, no reallocation);
- rotary embeddings from a precomputed table, applied to q and k together;
- logits for the last position only.

Adapters (server/lora.py) are served two ways: merged into a copy of the weights for one policy, or
per row for a batch of policies decoding the same text side by side (the Mixture): the batch shares
one read of the base weights, which is what a step costs, and adds each row's low-rank update.

It is checked against the transformers model's logits in the tests; models it does not understand
(`supports` returns a reason) run on the generic path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from server.lora import FusedLora

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


class Weights:
    """The base model's weights in fused form, shared by every decoder built on them."""

    NAMES = ("qkv", "o", "gu", "d")

    def __init__(self, model) -> None:
        reason = supports(model)
        if reason:
            raise ValueError(f"FastDecoder cannot run this model: {reason}")
        cfg = model.config
        inner = model.model
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.dtype = inner.embed_tokens.weight.dtype
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.head = _t(model.lm_head.weight)  # the output head transposed, as the layers are
        # ... and as the model holds it (vocab × hidden; no copy): for two rows or more, head · xᵀ
        # was 2-3× faster than x · headᵀ on this class of CPU (8 rows: 14 against 39 ms; one row:
        # 6 against 10 ms the other way round), and the head is most of a step's weight read.
        self.head_rows = model.lm_head.weight.detach()
        rope = getattr(cfg, "rope_parameters", None) or {}
        self.theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
        # Per layer: norms, fused matrices {"qkv", "o", "gu", "d"}, each stored transposed (in × out),
        # and the q/k/v bias if any.
        self.layers: list[dict] = []
        self.shapes: list[dict[str, tuple[int, ...]]] = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            bias = None
            if att.q_proj.bias is not None:
                bias = torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]).detach()
            self.layers.append(
                {
                    "ln1": layer.input_layernorm.weight.detach(),
                    "ln2": layer.post_attention_layernorm.weight.detach(),
                    "bias": bias,
                    "qkv": _t(torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])),
                    "o": _t(att.o_proj.weight),
                    "gu": _t(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    "d": _t(mlp.down_proj.weight),
                }
            )
            self.shapes.append(
                {
                    "qkv": (att.q_proj.out_features, att.k_proj.out_features, att.v_proj.out_features,
                            att.q_proj.in_features),
                    "o": (att.o_proj.out_features, att.o_proj.in_features),
                    "gu": (mlp.gate_proj.out_features, mlp.up_proj.out_features, mlp.gate_proj.in_features),
                    "d": (mlp.down_proj.out_features, mlp.down_proj.in_features),
                }
            )

    def merged(self, lora: FusedLora | None) -> list[dict]:
        """Per-layer weights with `lora` added (a copy of the matrices it touches); base when None."""
        if lora is None:
            return self.layers
        out = []
        for base, delta in zip(self.layers, lora.layers):
            layer = dict(base)
            for name, (a, b) in delta.items():
                layer[name] = torch.addmm(base[name], a.t(), b.t())  # W + (B A)ᵀ, transposed as W is
            out.append(layer)
        return out

    def bytes_per_token(self) -> int:
        """Bytes of weights one decoding step reads: every layer, the final norm, the output head.

        The input embedding is a row lookup (one row per token), so it is not counted unless the
        output head shares it, in which case the head's read is what counts.
        """
        total = self.head.numel() * self.head.element_size() + self.norm.numel() * self.norm.element_size()
        for layer in self.layers:
            total += sum(t.numel() * t.element_size() for t in layer.values() if t is not None)
        return total


class FastDecoder:
    """One sequence (or a batch of policies on the same text) with a preallocated key/value cache.

    `lora` merges one adapter into this decoder's weights; `row_loras` (one per batch row, None for the
    base) applies adapters per row on the shared base weights instead. `batch` rows without per-row
    adapters decode side by side from a shared prefix (a trainer's k samples of one prompt): `forward`
    then takes a (batch, T) tensor of each row's own tokens.
    """

    def __init__(
        self,
        model_or_weights,
        max_len: int = 4096,
        lora: FusedLora | None = None,
        row_loras: list[FusedLora | None] | None = None,
        batch: int = 1,
    ) -> None:
        w = model_or_weights if isinstance(model_or_weights, Weights) else Weights(model_or_weights)
        self.w = w
        self.max_len = max_len
        self.batch = len(row_loras) if row_loras else max(1, batch)
        if lora is not None and row_loras:
            raise ValueError("merge one adapter or apply one per row, not both")
        self.layers = w.merged(lora)
        self.row = _stack_rows(row_loras, w) if row_loras else None
        inv = 1.0 / (w.theta ** (torch.arange(0, w.head_dim, 2, dtype=torch.float32) / w.head_dim))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos = emb.cos().to(w.dtype)
        self.sin = emb.sin().to(w.dtype)
        shape = (len(self.layers), self.batch, w.n_kv, max_len, w.head_dim)
        self.k_cache = torch.zeros(shape, dtype=w.dtype)
        self.v_cache = torch.zeros(shape, dtype=w.dtype)
        self.length = 0  # tokens in the cache
        # Per row, cache positions before its own sequence starts (rows of different lengths side by
        # side, left-padded); None: every row starts at 0.
        self.pads: torch.Tensor | None = None

    # Kept for callers that know the decoder by these names.
    @property
    def weight_bytes_per_token(self) -> int:
        return self.w.bytes_per_token()

    def left_pad(self, pads: list[int]) -> None:
        """Rows whose sequences are shorter than the cache's length: row b's first `pads[b]` positions
        are padding, never attended to, and its own positions (for the rotary embedding) start after
        them. Fill each row's cache from `pads[b]` on before decoding."""
        if len(pads) != self.batch or min(pads) < 0:
            raise ValueError(f"one non-negative pad per row ({self.batch}), got {pads}")
        self.pads = torch.tensor(pads, dtype=torch.long) if any(pads) else None

    def crop(self, length: int) -> None:
        """Forget cached positions from `length` on (the rest is overwritten by later tokens)."""
        self.length = max(0, min(length, self.length))

    def keep(self, rows: list[int]) -> None:
        """Go on with only these rows (their caches and adapters), in this order: rows whose answer is
        finished stop costing a share of every later step."""
        index = torch.tensor(rows, dtype=torch.long)
        self.k_cache = self.k_cache.index_select(1, index)
        self.v_cache = self.v_cache.index_select(1, index)
        if self.row is not None:
            self.row = [{name: (a[index], b[index]) for name, (a, b) in layer.items()} for layer in self.row]
        if self.pads is not None:
            self.pads = self.pads[index]
        self.batch = len(rows)

    def _linear(self, x: torch.Tensor, li: int, name: str, bias=None) -> torch.Tensor:
        y = x @ self.layers[li][name]  # weights are stored in × out
        if bias is not None:
            y = y + bias
        if self.row is not None and name in self.row[li]:
            a, b = self.row[li][name]  # (B, r, in), (B, out, r)
            y = y + torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2))
        return y

    @torch.inference_mode()
    def forward(self, ids: list[int] | torch.Tensor, all_positions: bool = False) -> torch.Tensor:
        """Append `ids` to the sequence; return the next-token logits after the last of them:
        shape (vocab,) for one sequence, (batch, vocab) for a batch. `ids` is one list for every row,
        or a (batch, T) tensor of each row's tokens. With `all_positions`, the logits after each of
        `ids`: shape (T, vocab) for one sequence, (batch, T, vocab) for a batch."""
        w = self.w
        per_row = isinstance(ids, torch.Tensor) and ids.dim() == 2
        T, B = (ids.shape[1] if per_row else len(ids)), self.batch
        start = self.length
        if start + T > self.max_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds the cache of {self.max_len}")
        end = start + T
        nh, nkv, hd = w.n_heads, w.n_kv, w.head_dim
        if per_row:
            x = w.embed[ids.to(torch.long)]
        else:
            x = w.embed[torch.tensor(ids, dtype=torch.long)].unsqueeze(0).expand(B, T, -1)
        half = hd // 2
        mask = None
        if self.pads is None:
            cos = self.cos[start:end].unsqueeze(1)  # (T, 1, hd)
            sin = self.sin[start:end].unsqueeze(1)
            if T > 1:
                # Query i (at position start+i) sees keys 0..start+i.
                mask = torch.ones(T, end, dtype=torch.bool).tril(diagonal=start)
        else:
            positions = (torch.arange(start, end)[None, :] - self.pads[:, None]).clamp(min=0)  # (B, T)
            cos = self.cos[positions].unsqueeze(2)  # (B, T, 1, hd)
            sin = self.sin[positions].unsqueeze(2)
            # ... and row b's queries never see its padding, keys 0..pads[b]-1.
            causal = torch.ones(T, end, dtype=torch.bool).tril(diagonal=start)
            mask = (causal[None] & (torch.arange(end)[None, :] >= self.pads[:, None])[:, None, :])[:, None]
        hidden = x.shape[-1]
        for li, layer in enumerate(self.layers):
            h = F.rms_norm(x, (hidden,), layer["ln1"], w.eps)
            qkv = self._linear(h, li, "qkv", layer["bias"]).view(B, T, nh + 2 * nkv, hd)
            qk = qkv[:, :, : nh + nkv]
            rotated = torch.cat((-qk[..., half:], qk[..., :half]), dim=-1)
            qk = qk * cos + rotated * sin  # rotary embedding on q and k at once
            q = qk[:, :, :nh].transpose(1, 2)  # (B, nh, T, hd)
            self.k_cache[li, :, :, start:end] = qk[:, :, nh:].transpose(1, 2)
            self.v_cache[li, :, :, start:end] = qkv[:, :, nh + nkv :].transpose(1, 2)
            att = F.scaled_dot_product_attention(
                q, self.k_cache[li, :, :, :end], self.v_cache[li, :, :, :end],
                attn_mask=mask, enable_gqa=nkv != nh,
            )
            x = x + self._linear(att.transpose(1, 2).reshape(B, T, nh * hd), li, "o")
            h = F.rms_norm(x, (hidden,), layer["ln2"], w.eps)
            gate, up = self._linear(h, li, "gu").chunk(2, dim=-1)
            x = x + self._linear(F.silu(gate) * up, li, "d")
        self.length = end
        if all_positions:
            logits = _project(w, F.rms_norm(x, (hidden,), w.norm, w.eps))
            return logits[0] if B == 1 else logits
        last = F.rms_norm(x[:, -1], (hidden,), w.norm, w.eps)
        logits = _project(w, last)
        return logits[0] if B == 1 else logits


def _project(w: Weights, h: torch.Tensor) -> torch.Tensor:
    """Logits (..., vocab) of final hidden states (..., hidden): one row through the transposed head,
    several through the model's own layout (see Weights.head_rows). The result may be a transposed
    view; the ops that read logits take any strides."""
    flat = h.reshape(-1, h.shape[-1])
    out = flat @ w.head if flat.shape[0] == 1 else (w.head_rows @ flat.t()).t()
    return out.reshape(*h.shape[:-1], out.shape[-1])


def _t(weight: torch.Tensor) -> torch.Tensor:
    """A weight (out × in) as the decoder stores it: transposed, contiguous, out of autograd."""
    return weight.detach().t().contiguous()


def _stack_rows(row_loras: list[FusedLora | None], w: Weights) -> list[dict]:
    """Per layer and fused weight: A (B, r, in) and B (B, out, r), zero-padded to the largest rank;
    a row without an adapter (the base policy) gets zeros."""
    out = []
    for li, shape in enumerate(w.shapes):
        stacked = {}
        for name in Weights.NAMES:
            pairs = [lo.layers[li].get(name) if lo is not None else None for lo in row_loras]
            if not any(p is not None for p in pairs):
                continue
            r = max(p[0].shape[0] for p in pairs if p is not None)
            fan_in, fan_out = shape[name][-1], sum(shape[name][:-1])
            A = torch.zeros(len(pairs), r, fan_in, dtype=w.dtype)
            Bm = torch.zeros(len(pairs), fan_out, r, dtype=w.dtype)
            for i, p in enumerate(pairs):
                if p is not None:
                    A[i, : p[0].shape[0]] = p[0]
                    Bm[i, :, : p[1].shape[1]] = p[1]
            stacked[name] = (A, Bm)
        out.append(stacked)
    return out
