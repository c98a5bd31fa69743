"""What a decoding step costs for one row and for several, in the server's lean decoder: the rows read
the same weights, so a memory-bound step should cost about the same for 4 rows as for 1.

Validation and COST sampling decode several rows at once; this prints the median step for 1 row, 4
and 8 rows, and 4 and 8 rows with a LoRA adapter applied per row (as COST samples a step's two
prompts), after a 200-token prompt.
Then the matrix products alone, for the layout question behind it: 30 matrices the size of a layer's
fused gate/up projection, multiplied as the decoder stores them (`F.linear(x, W)`, W is out × in) and
pre-transposed (`x @ Wᵀ`, Wᵀ contiguous, as the decoder now stores them), for 1, 2, 4 and 8 rows.

  .venv/bin/python benchmarks/decode_rows.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency import machine  # noqa: E402
from server import fast_decoder, model_store  # noqa: E402
from server.lora import fuse  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the embedded default model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args(argv)

    import torch

    from training.cost import CostConfig
    from training.lora import load_base, peft_model

    torch.set_num_threads(args.threads)
    model, _ = load_base(model_store.resolve_model_dir(args.model))
    weights = fast_decoder.Weights(model)
    cfg = CostConfig()
    policy = peft_model(model, cfg)
    live = {n: p.detach() for n, p in policy.named_parameters() if ".lora_A." in n or ".lora_B." in n}
    lora = fuse({"r": cfg.r, "lora_alpha": cfg.alpha}, live, weights.shapes)
    print(f"command: python {' '.join(sys.argv)}")
    print("machine:", json.dumps(machine()))
    print("\n| rows | adapter | median ms a step | weights read a step |\n|---:|---|---:|---:|")
    for rows, kw in ((1, {}), (4, {"batch": 4}), (4, {"row_loras": [lora] * 4}), (8, {"batch": 8}),
                     (8, {"row_loras": [lora] * 8})):
        decoder = fast_decoder.FastDecoder(weights, max_len=300, **kw)
        decoder.forward(list(range(100, 300)))
        times = []
        for i in range(args.steps):
            ids = torch.full((rows, 1), 500 + i) if rows > 1 else [500 + i]
            t = time.perf_counter()
            decoder.forward(ids)
            times.append(time.perf_counter() - t)
        median = sorted(times)[len(times) // 2] * 1000
        print(f"| {rows} | {'per row' if 'row_loras' in kw else 'none'} | {median:.1f} | "
              f"{weights.bytes_per_token() / 1e6:.0f} MB |")  # fmt: skip
    _layouts()
    return 0


def _layouts(repeats: int = 10) -> None:
    import torch
    import torch.nn.functional as F

    mats = [torch.randn(2 * 1536, 576) for _ in range(30)]
    mats_t = [m.t().contiguous() for m in mats]
    size = sum(m.numel() * m.element_size() for m in mats)

    def clock(fn, rows: int) -> float:
        x = torch.randn(rows, 576)
        for _ in range(3):
            fn(x)
        t = time.perf_counter()
        for _ in range(repeats):
            fn(x)
        return (time.perf_counter() - t) / repeats * 1000

    print(f"\n| rows | F.linear(x, W) ms | x @ Wᵀ ms | GB/s, F.linear | GB/s, x @ Wᵀ |  ({size / 1e6:.0f} MB of weights)")
    print("|---:|---:|---:|---:|---:|")
    for rows in (1, 2, 4, 8):
        a = clock(lambda x: [F.linear(x, m) for m in mats], rows)
        b = clock(lambda x: [x @ m for m in mats_t], rows)
        print(f"| {rows} | {a:.1f} | {b:.1f} | {size / a / 1e6:.1f} | {size / b / 1e6:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
