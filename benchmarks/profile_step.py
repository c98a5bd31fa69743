"""Where a decoding step's time goes: the lean decoder's step under torch's profiler, per operator.

  .venv/bin/python benchmarks/profile_step.py [--model DIR] [--context 600] [--steps 20]

Prints the step time, the weights read per step, the floor for them at the read bandwidth measured
in the same run, and the operators that take the time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.latency import copy_bandwidth, read_bandwidth  # noqa: E402
from server import model_store  # noqa: E402
from server.runtime import Runtime  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the embedded default model)")
    ap.add_argument("--context", type=int, default=600, help="tokens already in the cache")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rt = Runtime(model_store.resolve_model_dir(args.model))
    dec = rt.fast
    ids = list(range(1000, 1000 + args.context))
    dec.crop(0)
    dec.forward(ids)
    times = []
    token = 42
    for _ in range(args.steps):
        t = time.perf_counter()
        token = int(dec.forward([token]).argmax())
        times.append(time.perf_counter() - t)
    times.sort()
    bw = max(read_bandwidth(), copy_bandwidth())
    wbytes = dec.weight_bytes_per_token
    step = times[len(times) // 2] * 1000
    floor = wbytes / bw * 1000
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"threads {torch.get_num_threads()}; context {args.context} tokens; step p50 {step:.1f} ms (min "
          f"{times[0] * 1000:.1f}); weights read {wbytes / 1e6:.0f} MB; bandwidth {bw / 1e9:.1f} GB/s; "
          f"floor {floor:.1f} ms; ratio {step / floor:.2f}x")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            token = int(dec.forward([token]).argmax())
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    # The same step through one matrix multiply per weight, nothing else: what the weights alone cost.
    mats = [m for layer in dec.layers for k, m in layer.items() if k in ("qkv", "o", "gu", "d")] + [dec.w.lm_head]
    x = {m.shape[1]: torch.randn(1, m.shape[1]) for m in mats}
    gemv = []
    for _ in range(args.steps):
        t = time.perf_counter()
        for m in mats:
            torch.nn.functional.linear(x[m.shape[1]], m)
        gemv.append(time.perf_counter() - t)
    gemv.sort()
    print(f"matrix-vector products alone: p50 {gemv[len(gemv) // 2] * 1000:.1f} ms per step "
          f"({len(mats)} products): the rest of the step is everything else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
