"""Suggestion latency, replayed over real typing, with the memory-bandwidth floor measured in the same run.

Replays a user typing over real files — lines of Python's standard library (code) and sentences of the
IteraTeR documents (prose) — asking for a suggestion at every keystroke as an editor does, and prints
for each backend side by side:

  p50/p95 latency from request to response (all requests, and those that ran the model),
  time to first token, decode ms/token, the bandwidth floor (bytes of weights read per token divided
  by the copy bandwidth measured in this run) and the ratio to it, and peak memory.

Backends:
  redline   the server's runtime: lean decoding step, key/value cache kept across keystrokes,
            suggestions typed through reused
  generic   the same runtime on transformers' generic forward (what any other model folder gets)
  generate  plain `model.generate` on the whole prompt at each request, no reuse: what a simple
            integration would do

Example:
  .venv/bin/python benchmarks/latency.py                 # about 6 minutes on 2 cores
  .venv/bin/python benchmarks/latency.py --backends redline --code-lines 10 --prose-sentences 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server import model_store  # noqa: E402
from server.completion import Completer, CompletionConfig  # noqa: E402
from server.runtime import Generation, Runtime, RuntimeConfig  # noqa: E402
from training.corpora import iterater_documents, stdlib_python_files  # noqa: E402


@dataclass
class Request:
    domain: str  # "code" | "prose"
    uri: str
    text: str
    offset: int
    language: str


@dataclass
class Sample:
    domain: str
    latency_ms: float
    model_ran: bool
    generation: Generation | None
    empty: bool


def code_sessions(n_lines: int, keystrokes: int, rng: random.Random) -> list[list[Request]]:
    """Each session: one line of a stdlib file typed afresh, a request after each keystroke."""
    files = stdlib_python_files()
    sessions = []
    while len(sessions) < n_lines:
        path = rng.choice(files)
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        candidates = [
            i for i, ln in enumerate(lines)
            if 20 <= len(ln.strip()) <= 100 and not ln.strip().startswith(("#", '"', "'")) and i > 20
        ]
        if not candidates:
            continue
        i = rng.choice(candidates)
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        start = sum(len(ln) + 1 for ln in lines[:i])
        rest = "\n".join(lines[i + 1 :])
        session = []
        for k in range(1, keystrokes + 1):
            typed = line[: indent + k]
            doc = text[:start] + typed + "\n" + rest
            session.append(Request("code", f"file://{path}", doc, start + len(typed), "python"))
        sessions.append(session)
    return sessions


def prose_sessions(n_sentences: int, keystrokes: int, rng: random.Random) -> list[list[Request]]:
    """Each session: a sentence of an IteraTeR document typed from its fourth word on."""
    docs = iterater_documents()
    sessions = []
    while len(sessions) < n_sentences:
        doc_id, text = rng.choice(docs)
        starts = [0] + [m.end() for m in re.finditer(r"[.!?]\s+", text)]
        s = rng.choice(starts)
        words = list(re.finditer(r"\S+\s*", text[s:]))
        if len(words) < 8:
            continue
        base = s + words[3].start()
        session = []
        for k in range(1, keystrokes + 1):
            cursor = base + k
            doc = text[:cursor]
            session.append(Request("prose", f"file:///{doc_id}.md", doc, cursor, "markdown"))
        sessions.append(session)
    return sessions


class GenerateRuntime:
    """Plain `model.generate` on the whole prompt at each request: the simple integration."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.fim = runtime.fim
        self.version = runtime.version

    def generate(self, prompt, max_new_tokens, stop=None, cancel=None, policy="base") -> Generation:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        rt = self.rt
        started = time.perf_counter()
        ids = torch.tensor([rt.encode(prompt)])
        first = []

        class Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                if not first:
                    first.append(time.perf_counter())
                out = input_ids[0, ids.shape[1] :].tolist()
                return bool(stop and stop(rt.decode(out)) is not None)

        with torch.inference_mode():
            out = rt.model.generate(
                ids, max_new_tokens=max_new_tokens, do_sample=False,
                stopping_criteria=StoppingCriteriaList([Stop()]),
                pad_token_id=next(iter(rt.eos_ids)), eos_token_id=list(rt.eos_ids),
            )
        now = time.perf_counter()
        gen_ids = out[0, ids.shape[1] :].tolist()
        gen_ids = [t for t in gen_ids if t not in rt.eos_ids]
        text = rt.decode(gen_ids)
        cut = stop(text) if stop else None
        first_at = first[0] if first else now
        return Generation(
            text=text[:cut] if cut is not None else text, tokens=len(gen_ids),
            prompt_tokens=ids.shape[1], reused_tokens=0,
            prefill_ms=(first_at - started) * 1000, first_token_ms=(first_at - started) * 1000,
            decode_ms=(now - first_at) * 1000, total_ms=(now - started) * 1000,
            stop_reason="stop" if cut is not None else "length",
        )


def copy_bandwidth(mb: int = 512, repeats: int = 8) -> float:
    """Best-of STREAM-style copy bandwidth in bytes/s (bytes read plus bytes written)."""
    import torch

    a = torch.ones(mb * 1024 * 1024 // 4)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 4 / best


def read_bandwidth(mb: int = 512, repeats: int = 8) -> float:
    """Best-of read bandwidth in bytes/s: summing a buffer reads it once, as a matrix-vector product
    reads its weights once."""
    import torch

    a = torch.ones(mb * 1024 * 1024 // 4)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.numel() * 4 / best


def weight_bytes_per_token(rt: Runtime) -> int:
    if rt.fast is not None:
        return rt.fast.weight_bytes_per_token
    from server.fast_decoder import FastDecoder

    return FastDecoder(rt.model, max_len=8).weight_bytes_per_token


def run_backend(name: str, rt: Runtime, sessions: list[list[Request]], max_tokens: int) -> list[Sample]:
    if name == "generate":
        completer = Completer(GenerateRuntime(rt), CompletionConfig(max_tokens=max_tokens))
        completer._typed_through = lambda *a: None  # the simple integration has no such reuse
    else:
        completer = Completer(rt, CompletionConfig(max_tokens=max_tokens))
    rt.reset_cache()
    samples = []
    for session in sessions:
        for req in session:
            t = time.perf_counter()
            s = completer.complete(req.uri, req.text, req.offset, req.language)
            latency = (time.perf_counter() - t) * 1000
            samples.append(Sample(req.domain, latency, s.generation is not None, s.generation, not s.text))
    return samples


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarise(samples: list[Sample], floor_ms: float) -> dict:
    gens = [s.generation for s in samples if s.generation is not None]
    decode_tokens = sum(max(g.tokens - 1, 0) for g in gens)
    decode_ms = sum(g.decode_ms for g in gens if g.tokens > 1)
    per_token = decode_ms / decode_tokens if decode_tokens else float("nan")
    model = [s.latency_ms for s in samples if s.model_ran]
    return {
        "requests": len(samples),
        "model_calls": len(model),
        "p50_ms": pct([s.latency_ms for s in samples], 0.5),
        "p95_ms": pct([s.latency_ms for s in samples], 0.95),
        "model_p50_ms": pct(model, 0.5),
        "model_p95_ms": pct(model, 0.95),
        "ttft_p50_ms": pct([g.first_token_ms for g in gens], 0.5),
        "prefill_tokens_mean": statistics.mean(g.prompt_tokens - g.reused_tokens for g in gens) if gens else 0,
        "prompt_tokens_mean": statistics.mean(g.prompt_tokens for g in gens) if gens else 0,
        "tokens_mean": statistics.mean(g.tokens for g in gens) if gens else 0,
        "decode_ms_per_token": per_token,
        "floor_ms_per_token": floor_ms,
        "ratio_to_floor": per_token / floor_ms if floor_ms else float("nan"),
        "empty_rate": sum(s.empty for s in samples) / max(len(samples), 1),
    }


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the embedded default model)")
    ap.add_argument("--backends", default="redline,generic,generate", help="comma-separated, see above")
    ap.add_argument("--code-lines", type=int, default=24, help="lines of stdlib code typed")
    ap.add_argument("--prose-sentences", type=int, default=16, help="IteraTeR sentences typed")
    ap.add_argument("--keystrokes", type=int, default=6, help="keystrokes (requests) per line or sentence")
    ap.add_argument("--max-tokens", type=int, default=48, help="suggestion length limit, as the server's")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    sessions = {
        "code": code_sessions(args.code_lines, args.keystrokes, rng),
        "prose": prose_sessions(args.prose_sentences, args.keystrokes, rng),
    }
    folder = model_store.resolve_model_dir(args.model, progress=lambda m: print(m, file=sys.stderr))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print("machine:", json.dumps(machine()))
    copy_bw = copy_bandwidth()
    bandwidth = read_bandwidth()
    print(f"copy bandwidth: {copy_bw / 1e9:.1f} GB/s (read + write, best of 8 copies of 512 MB)")
    print(f"read bandwidth: {bandwidth / 1e9:.1f} GB/s (best of 8 sums of 512 MB); the floor uses the "
          f"larger of the two, so it is never flattering")
    bandwidth = max(bandwidth, copy_bw)
    results: dict = {"machine": machine(), "copy_bandwidth_gbs": copy_bw / 1e9,
                     "bandwidth_gbs": bandwidth / 1e9, "backends": {}}
    runtimes: dict[bool, Runtime] = {}
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        fast = name == "redline"
        if fast not in runtimes:
            runtimes[fast] = Runtime(folder, RuntimeConfig(fast_decoder=fast))
        rt = runtimes[fast]
        wbytes = weight_bytes_per_token(rt)
        floor_ms = wbytes / bandwidth * 1000
        # Warm up once (first-call allocations), outside the figures.
        Completer(rt).complete("file:///warm.py", "def f(x):\n    return ", 21, "python")
        started = time.perf_counter()
        samples = []
        for domain, sess in sessions.items():
            samples += run_backend(name, rt, sess, args.max_tokens)
        elapsed = time.perf_counter() - started
        results["backends"][name] = {
            domain: summarise([s for s in samples if s.domain == domain], floor_ms) for domain in sessions
        }
        results["backends"][name]["weights_mb_per_token"] = wbytes / 1e6
        results["backends"][name]["seconds"] = elapsed
        results["backends"][name]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name}: {elapsed:.0f} s, weights read per token {wbytes / 1e6:.0f} MB, floor {floor_ms:.1f} ms/token",
              file=sys.stderr)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict) -> None:
    rows = [
        ("requests (model calls)", lambda d: f"{d['requests']} ({d['model_calls']})"),
        ("p50 / p95 ms, all requests", lambda d: f"{d['p50_ms']:.0f} / {d['p95_ms']:.0f}"),
        ("p50 / p95 ms, model calls", lambda d: f"{d['model_p50_ms']:.0f} / {d['model_p95_ms']:.0f}"),
        ("time to first token p50 ms", lambda d: f"{d['ttft_p50_ms']:.0f}"),
        ("prompt / prefilled tokens", lambda d: f"{d['prompt_tokens_mean']:.0f} / {d['prefill_tokens_mean']:.0f}"),
        ("tokens per suggestion", lambda d: f"{d['tokens_mean']:.1f}"),
        ("decode ms/token", lambda d: f"{d['decode_ms_per_token']:.1f}"),
        ("floor ms/token; ratio", lambda d: f"{d['floor_ms_per_token']:.1f}; {d['ratio_to_floor']:.2f}x"),
        ("empty suggestions", lambda d: f"{100 * d['empty_rate']:.0f}%"),
    ]
    names = list(results["backends"])
    for domain in ("code", "prose"):
        print(f"\n{domain}: " + " | ".join(names))
        width = max(len(r[0]) for r in rows)
        print(f"| {'':{width}} | " + " | ".join(f"{n:>14}" for n in names) + " |")
        print(f"|{'-' * (width + 2)}|" + "|".join("-" * 16 for _ in names) + "|")
        for label, fmt in rows:
            cells = [fmt(results["backends"][n][domain]) for n in names]
            print(f"| {label:{width}} | " + " | ".join(f"{c:>14}" for c in cells) + " |")
    print("\npeak memory (RSS, whole process): "
          + ", ".join(f"after {n} {results['backends'][n]['peak_rss_mb']:.0f} MB" for n in names))


if __name__ == "__main__":
    sys.exit(main())
