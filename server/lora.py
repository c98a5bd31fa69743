"""Reading peft LoRA adapters for serving, without peft.

A LoRA adapter adds s·B·A to a linear weight W (A: r×in, B: out×r, s = alpha/r, or alpha/√r with
rsLoRA). The lean decoder fuses q/k/v into one weight and gate/up into another, so the adapter's pairs
are fused the same way: A's stacked, B's placed block-diagonally. Then one low-rank pair per fused
weight serves either use:

- merged: W' = W + B·A, for serving one policy at full speed;
- per row: y = x·Wᵀ + (x·Aᵀ)·Bᵀ, for the Mixture, where K policies decode side by side on one shared
  read of the base weights.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

SUPPORTED_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


class AdapterError(ValueError):
    """An adapter folder the lean decoder cannot serve; the message says why."""


@dataclass
class FusedLora:
    """Per layer: {"qkv" | "o" | "gu" | "d": (A: r'×in, B: out×r' with the scale folded in)}."""

    layers: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]
    rank: int


def load_adapter(folder: Path, shapes: list[dict[str, tuple[int, ...]]], dtype=torch.float32) -> FusedLora:
    """Read `folder` (adapter_config.json + adapter_model.safetensors) for a model whose fused weight
    shapes per layer are `shapes` ({"qkv": (out_q, out_k, out_v, in), "o": (out, in), "gu": (out_g,
    out_u, in), "d": (out, in)})."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read the adapter in {folder}: {exc}") from exc
    return fuse(config, tensors, shapes, dtype, str(folder))


def fuse(config: dict, tensors: dict[str, torch.Tensor], shapes: list[dict[str, tuple[int, ...]]],
         dtype=torch.float32, folder: str = "the adapter") -> FusedLora:  # fmt: skip
    """A FusedLora from an adapter's config (r, lora_alpha, ...) and its lora_A / lora_B tensors, named
    as peft saves them or as a live peft model names its parameters (with the adapter's name)."""
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{folder}: peft type {config.get('peft_type')} is not LoRA")
    if config.get("use_dora"):
        raise AdapterError(f"{folder}: DoRA adapters are served by the generic path")
    r = int(config["r"])
    alpha = float(config.get("lora_alpha", r))
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = _KEY.search(key)
        if m is None:
            raise AdapterError(f"{folder}: the adapter changes {key}, which the lean decoder does not serve")
        layer, module, which = int(m.group(1)), m.group(2), m.group(3)
        if module not in SUPPORTED_TARGETS:
            raise AdapterError(f"{folder}: the adapter targets {module}")
        pairs.setdefault((layer, module), {})[which] = value.to(dtype)
    layers = []
    for li, shape in enumerate(shapes):
        fused = {}
        for name, modules in (("qkv", ("q_proj", "k_proj", "v_proj")), ("o", ("o_proj",)),
                              ("gu", ("gate_proj", "up_proj")), ("d", ("down_proj",))):
            outs, fan_in = shape[name][:-1], shape[name][-1]
            found = [pairs.get((li, m)) for m in modules]
            if not any(found):
                continue
            a_parts = []
            for pair, out in zip(found, outs):
                if pair is None:
                    continue
                if pair["A"].shape[1] != fan_in or pair["B"].shape[0] != out:
                    raise AdapterError(f"{folder}: layer {li} shapes do not match the base model")
                a_parts.append(pair["A"])
            total_r = sum(p["A"].shape[0] for p in found if p is not None)
            B = torch.zeros(sum(outs), total_r, dtype=dtype)
            row, col = 0, 0
            for pair, out in zip(found, outs):
                if pair is not None:
                    rr = pair["A"].shape[0]
                    B[row : row + out, col : col + rr] = pair["B"] * scale
                    col += rr
                row += out
            fused[name] = (torch.cat(a_parts).contiguous(), B.contiguous())
        layers.append(fused)
    return FusedLora(layers=layers, rank=r)
