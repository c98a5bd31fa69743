"""How long a retrain takes and how much memory it needs: the real trainer on real edits, as the editor
starts it.

The edits come from material nobody on this project wrote, shaped as the editor captures them:

- prose: IteraTeR's human revisions of scientific abstracts. A sentence before revision is the
  suggestion y, the same sentence after revision the user's y′, the document up to it the context;
- code: HumanEvalPack's bug fixes. A line of the buggy solution is y, the canonical line y′, the
  problem's prompt and the solution above the line the context.

Each edit's prompt is the one serving would build at that cursor (`server.prompt.build_context`,
`render_prompt`), written through `Store` exactly as capture writes it, with the real cost. Then
`python -m training train` (the process "Redline: Retrain now" starts) runs on it with the trainer's
own settings: a full retrain on `--edits` edits; then `--new` more edits arrive and an incremental
retrain continues from the new version's adapters (`--warm-start --incremental`). Printed: wall time
per stage, time per 100 training edits for each learner, and the trainer's peak memory (its maximum
resident set, from the kernel).

  .venv/bin/python benchmarks/retrain.py                     # 200 + 20 edits: most of an hour on 2 cores
  .venv/bin/python benchmarks/retrain.py --edits 60 --new 20 # a shorter run; per-100 figures still hold
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency import machine  # noqa: E402
from server import model_store  # noqa: E402
from server.prompt import build_context, render_prompt  # noqa: E402
from server.store import Store, SuggestionRecord  # noqa: E402
from training.corpora import iterater_revisions, shared_data_dir  # noqa: E402

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def prose_edits() -> list[dict]:
    """(document before the sentence, sentence before revision, after revision) from IteraTeR."""
    out = []
    for _, _, before, after in iterater_revisions():
        a, b = _SENTENCE.split(before), _SENTENCE.split(after)
        if not before or not after or len(a) != len(b):
            continue  # sentences merged or split: no one-to-one edit to take
        for i, (y, y2) in enumerate(zip(a, b)):
            if y != y2 and y.strip() and y2.strip():
                out.append({"context": " ".join(a[:i]) + (" " if i else ""), "y": y, "final": y2,
                            "language": "markdown", "ext": "md"})  # fmt: skip
    return out


def code_edits() -> list[dict]:
    """(prompt + solution above the line, buggy line, canonical line) from HumanEvalPack."""
    out = []
    with open(shared_data_dir() / "humanevalpack-python.jsonl", encoding="utf-8") as fh:
        for line in fh:
            p = json.loads(line)
            buggy, good = p["buggy_solution"].splitlines(True), p["canonical_solution"].splitlines(True)
            sm = difflib.SequenceMatcher(a=buggy, b=good, autojunk=False)
            for tag, i1, i2, j1, j2 in sm.get_opcodes():
                if tag != "replace" or i2 - i1 != 1 or j2 - j1 != 1:
                    continue
                y, y2 = buggy[i1].rstrip("\n"), good[j1].rstrip("\n")
                indent = y[: len(y) - len(y.lstrip())]
                if not y2.startswith(indent):
                    continue
                # The cursor sits after the line's indent, as when the user starts typing the line.
                out.append({"context": p["prompt"] + "".join(good[:j1]) + indent, "y": y[len(indent):],
                            "final": y2[len(indent):], "language": "python", "ext": "py"})  # fmt: skip
    return out


def write_store(db: Path, edits: list[dict], start: float, first: int = 0) -> None:
    with Store(db) as store:
        for i, e in enumerate(edits):
            ctx = build_context(e["context"], len(e["context"]), e["language"])
            rec = SuggestionRecord(
                uri=f"file:///retrain-bench/{first + i:04d}.{e['ext']}", suggestion=e["y"], prompt=render_prompt(ctx),
                prefix=ctx.prefix, suffix=ctx.suffix, language=e["language"], policy="base",
                created_at=start + i,
            )  # fmt: skip
            store.record_suggestion(rec)
            kind = "edited" if e["final"] != e["y"] else "accepted"
            store.record_outcome(rec.id, kind, e["final"], "idle", settled_at=start + i + 0.5)


def corpus(n: int, seed: int) -> list[dict]:
    """n edits, half prose and half code (as many of each as there are), in a random order."""
    rng = random.Random(seed)
    prose, code = prose_edits(), code_edits()
    rng.shuffle(prose)
    rng.shuffle(code)
    half = min(n // 2, len(code))
    picked = code[:half] + prose[: n - half]
    rng.shuffle(picked)
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} edits available ({len(prose)} prose, {len(code)} code)")
    return picked


def train(home: Path, model_dir: Path, extra: list[str]) -> dict:
    """One `python -m training train` run; its summary, wall time and peak memory."""
    cmd = [sys.executable, "-m", "training", "train", "--data-home", str(home), "--model", str(model_dir),
           "--progress", "none", *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the trainer exited with {proc.returncode}: {' '.join(cmd)}")
    summary = json.loads(lines[-1])
    # RUSAGE_CHILDREN keeps the largest child so far: a later, smaller run cannot be told apart.
    return {"summary": summary, "wall_s": wall, "home": str(home), "peak_gb": peak_kb / 1e6, "peak_is_this_run": peak_kb > before,
            "command": " ".join(["python", "-m", "training", "train", "--progress", "none", *extra])}  # fmt: skip


def report(label: str, run: dict) -> None:
    s = run["summary"]
    counts, secs, trained = s.get("counts", {}), s.get("seconds", {}), s.get("trained", {})
    n_train = max(int(counts.get("train", 0)), 1)
    peak = f"{run['peak_gb']:.2f} GB" + ("" if run["peak_is_this_run"] else " (an earlier run's; this one used less)")
    print(f"\n## {label}\n\ncommand: {run['command']}")
    print(f"edits: {json.dumps(counts)}; wall {run['wall_s'] / 60:.1f} min; peak memory (max RSS) {peak}")
    print(f"version {s.get('version')}: activated={s.get('activated')} ({s.get('reason')})")
    if s.get("skipped"):
        print(f"skipped: {json.dumps(s['skipped'])}")
    print("\n| stage | seconds | per 100 training edits | steps |\n|---|---:|---:|---:|")
    for stage, sec in secs.items():
        name = stage.removeprefix("train_")
        steps = (trained.get(name) or {}).get("steps", "") if stage.startswith("train_") else ""
        per100 = f"{sec / n_train * 100:.0f}" if stage.startswith("train_") else ""
        print(f"| {stage} | {sec:.0f} | {per100} | {steps} |")
    early = (trained.get("early") or {}).get("metrics") or {}
    if early.get("grid"):
        def nll(x) -> str:
            return "not scored (one point)" if x is None else f"{x:.3f}"

        points = ", ".join(f"λ {g['lambda']}: NLL {nll(g['val_nll'])} after {g['steps']} steps" for g in early["grid"])
        part = f"on {early['probe_edits']} edits each" if early.get("probe_edits") else "on every edit"
        print(f"\nEarly inside: grid trained {part} ({points}); λ {early.get('lambda')} kept, NLL "
              f"{nll(early.get('val_nll'))}")  # fmt: skip
    weights = (trained.get("mixture") or {}).get("weights")
    if weights:
        dropped = (trained.get("mixture") or {}).get("dropped") or {}
        print("Mixture weights: " + ", ".join(f"{k} {v:.2f}" for k, v in weights.items())
              + (" (dropped, under the minimum weight: " + ", ".join(f"{k} {v:.3f}" for k, v in dropped.items()) + ")"
                 if dropped else ""))  # fmt: skip
    found = [p for p in Path(run["home"]).rglob("cost_report.json") if s.get("version") and s["version"] in str(p)]
    if found:
        cost = json.loads(found[0].read_text())
        sec = cost.get("seconds", {})
        other = sec.get("total", 0) - sec.get("features", 0) - sec.get("policy", 0)
        ctx = cost.get("contexts") or {}
        visited = f", {ctx['visited']} of {ctx['logged']} contexts" if ctx else ""
        print(f"\nCOST inside: cost-model features {sec.get('features', 0):.0f} s, policy gradient "
              f"{sec.get('policy', 0):.0f} s ({cost.get('steps')} steps{visited}), the rest (loading, fitting, greedy "
              f"diagnostic on {cost.get('greedy_pessimistic_cost', {}).get('prompts')} prompts) {other:.0f} s")  # fmt: skip
    val = s.get("validation", {})
    if val:
        print("\n| policy | validation cost | capped at 1 | served | why |\n|---|---:|---:|---|---|")
        for p, v in val.items():
            capped = v.get("capped_cost")
            print(f"| {p} | {v.get('cost', float('nan')):.3f} | {'' if capped is None else f'{capped:.3f}'} | "
                  f"{'yes' if v.get('served') else 'no'} | {v.get('reason', '')} |")  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the embedded default model)")
    ap.add_argument("--edits", type=int, default=200, help="edits for the full retrain")
    ap.add_argument("--new", type=int, default=20, help="new edits for the incremental retrain (0: skip it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="passed to the trainer (both runs)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the data folder (printed)")
    args = ap.parse_args(argv)

    model_dir = model_store.resolve_model_dir(args.model, progress=lambda m: print(m, file=sys.stderr))
    edits = corpus(args.edits + args.new, args.seed)
    home = Path(tempfile.mkdtemp(prefix="redline-retrain-bench-"))
    print(f"command: python {' '.join(sys.argv)}")
    print("machine:", json.dumps(machine()))
    print(f"edits: {args.edits} + {args.new} new; {sum(e['language'] == 'python' for e in edits)} code, "
          f"{sum(e['language'] != 'python' for e in edits)} prose; data folder {home}")  # fmt: skip
    sets = [x for s in args.set for x in ("--set", s)]
    start = time.time() - 10 * 86400
    write_store(home / "redline.db", edits[: args.edits], start)
    full = train(home, model_dir, sets)
    report(f"full retrain on {args.edits} edits", full)
    if args.new:
        write_store(home / "redline.db", edits[args.edits :], start + args.edits + 100, first=args.edits)
        inc = train(home, model_dir, ["--warm-start", "--incremental", *sets])
        report(f"incremental retrain after {args.new} new edits (warm start)", inc)
    if not args.keep:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
