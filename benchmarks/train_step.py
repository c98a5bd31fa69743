"""What one training step of SUP and PREF costs, with and without the shared-prompt forward and the
length-bucketed order of micro-batches (`training.lora.LengthBuckets`), on one and on two torch threads: the real default model, real edits (the retrain benchmark's IteraTeR and
HumanEvalPack edits, prompts as serving builds them), trl's trainers as the learners build them.

For each setting it runs `--steps` optimizer steps after one warm-up step, in a process of its own,
and prints seconds per step and per 100 edits, and that process's peak resident memory.

  .venv/bin/python benchmarks/train_step.py                 # SUP and PREF, 6 settings each, ~15 min
  .venv/bin/python benchmarks/train_step.py --learners pref --threads 2 --settings shared,shared+buckets
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency import machine
from benchmarks.retrain import corpus, write_store
from server import model_store
from training import data, shared_prompt


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _timed(trainer, steps: int, batch: int) -> dict:
    """Seconds per optimizer step over `steps` steps, after one untimed warm-up step."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    marks: list[float] = []

    class _Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    trainer.add_callback(_Clock())
    trainer.args.max_steps = steps + 1
    start = time.perf_counter()
    trainer.train()
    per_step = (marks[-1] - marks[0]) / steps
    return {"s_per_step": round(per_step, 2), "s_per_100_edits": round(per_step / batch * 100, 1),
            "first_step_s": round(marks[0] - start, 2), "peak_gb": round(_peak_gb(), 2)}  # fmt: skip


def _sup(model_dir, edits, scratch: Path):
    from training.sup import SupConfig, sft_trainer

    cfg = SupConfig()
    trainer, _ = sft_trainer(model_dir, edits, cfg, scratch, None)
    return trainer, cfg.batch_size * cfg.grad_accum


def _pref(model_dir, edits, scratch: Path):
    from training.pref import PrefConfig, dpo_trainer

    cfg = PrefConfig()
    trainer, _ = dpo_trainer(model_dir, edits, cfg, scratch, None)
    return trainer, cfg.batch_size * cfg.grad_accum


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the embedded default model)")
    ap.add_argument("--learners", default="sup,pref")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--settings", default="plain,shared,shared+buckets",
                    help="comma-separated: plain, shared (prompt shared, compact head), shared+buckets")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # learner,threads,setting,db: one setting, in a child
    args = ap.parse_args(argv)
    model_dir = model_store.resolve_model_dir(args.model, progress=lambda m: print(m, file=sys.stderr))
    if args.one:
        return _one(model_dir, args)

    home = Path(tempfile.mkdtemp(prefix="redline-step-bench-"))
    write_store(home / "redline.db", corpus(args.edits, 0), time.time() - 86400)
    edits = data.load_edits(home / "redline.db")
    print(f"command: python {' '.join(sys.argv)}")
    print("machine:", json.dumps(machine()))
    print(f"{len(edits)} edits, {sum(e.language == 'python' for e in edits)} code\n")
    print("| learner | threads | setting | s / step | s / 100 edits | first step s | peak GB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for learner in args.learners.split(","):
        for threads in args.threads.split(","):
            for setting in args.settings.split(","):
                cmd = [sys.executable, __file__, "--model", str(model_dir), "--steps", str(args.steps),
                       "--one", f"{learner},{threads},{setting},{home / 'redline.db'}"]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr[-3000:])
                    return proc.returncode
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"| {learner} | {threads} | {setting} | {r['s_per_step']} | {r['s_per_100_edits']} | "
                      f"{r['first_step_s']} | {r['peak_gb']} |", flush=True)  # fmt: skip
    return 0


def _one(model_dir: Path, args) -> int:
    import torch

    from training import lora

    learner, threads, setting, db = args.one.split(",", 3)
    if setting not in ("plain", "shared", "shared+buckets"):
        raise SystemExit(f"unknown setting {setting!r}")
    torch.set_num_threads(int(threads))
    if setting == "plain":
        shared_prompt.install = lambda *a, **k: False
    if setting != "shared+buckets":
        lora.bucket_by_length = lambda trainer: None  # trl's own random order
    edits = data.load_edits(Path(db))
    with tempfile.TemporaryDirectory() as scratch:
        trainer, batch = {"sup": _sup, "pref": _pref}[learner](model_dir, edits, Path(scratch))
        print(json.dumps(_timed(trainer, args.steps, batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
