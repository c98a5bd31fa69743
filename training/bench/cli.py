"""`python -m training.bench` (`redline bench`): run the learners against simulated users, write a report.

Writes `report.md`, `results.json` and `plots/*.png` into `--out` (rewritten after every run, so a
stopped bench still leaves a partial report), and each run's store, online log and (with
`--keep-versions`) trained adapters under `--work`.

The full default (`harness.DEFAULT_SETTINGS` and `BenchConfig`: 5 settings × 3 seeds, 32 offline edits
and 8 online rounds each, a few optimizer steps per learner, the default model) is sized for about 90
minutes on two CPU cores (docs/bench has the measurements); `--quick` runs a tiny model, 10 edits, 4
rounds, one seed and two settings in about two minutes (what the test suite runs). Exit status: 0 done,
2 bad arguments, 1 anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
QUICK = {"edits": 10, "rounds": 4, "seeds": 1, "writing_tokens": 32, "code_tokens": 48, "max_prompt_tokens": 160}


def build_parser() -> argparse.ArgumentParser:
    from training.bench.harness import DEFAULT_SETTINGS

    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="a tiny random model (or --model), few edits and rounds, one seed, fast learners")  # fmt: skip
    p.add_argument("--model", help="base model folder (default: the embedded default model; --quick: a tiny one)")
    p.add_argument("--settings", help=f"comma-separated user settings (default: {','.join(DEFAULT_SETTINGS)})")
    p.add_argument("--user", help="one user instead of the settings: a setting's name or module:attr")
    p.add_argument("--contexts", help="the users' contexts: a set name (summary, email, humaneval ...) or a JSONL file")
    d = _defaults()
    p.add_argument("--edits", type=int,
                   help=f"offline edits per setting and seed (default {d['edits']}; --quick {QUICK['edits']})")
    p.add_argument("--rounds", type=int,
                   help=f"online rounds per setting and seed (default {d['rounds']}; --quick {QUICK['rounds']})")
    p.add_argument("--seeds", type=int, help=f"how many seeds (default {len(d['seeds'])}; --quick {QUICK['seeds']})")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--writing-tokens", type=int,
                   help=f"most tokens of a writing answer (default {d['writing_tokens']})")
    p.add_argument("--code-tokens", type=int, help=f"most tokens of a function body (default {d['code_tokens']})")
    p.add_argument("--max-prompt-tokens", type=int,
                   help=f"leave out contexts with longer prompts (default {d['max_prompt_tokens']})")  # fmt: skip
    p.add_argument("--out", help="folder for report.md, results.json and plots/ (default: <data folder>/bench/<time>)")
    p.add_argument("--work", help="folder for each run's store and adapters (default: <data folder>/bench/<time>/runs)")
    p.add_argument("--label", default="", help="what this run is, for the report's title (e.g. 'reduced')")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: every core; --quick: one fewer)")
    p.add_argument("--keep-versions", action="store_true", help="keep each run's trained adapters")
    p.add_argument("--progress", default="auto", choices=("auto", "bars", "none"),
                   help="progress bars: on a terminal (auto), always, or none")  # fmt: skip
    p.add_argument("--render", metavar="DIR",
                   help="only rebuild DIR/report.md and DIR/plots from DIR/results.json (no model runs)")  # fmt: skip
    p.add_argument("--learners", help="comma-separated, from: sup, pref, early, cost, mixture (default: all available)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a learner setting, as `python -m training train --set` (repeatable)")  # fmt: skip
    return p


def config_from_args(args: argparse.Namespace):
    from training.bench.harness import QUICK_SETTINGS, BenchConfig, resolve_settings
    from training.cli import apply_settings

    quick = args.quick
    names = [s.strip() for s in args.settings.split(",") if s.strip()] if args.settings else None
    if quick and names is None and not args.user:
        names = list(QUICK_SETTINGS)
    settings = resolve_settings(names, args.user, args.contexts)

    defaults = _defaults()

    def pick(name: str):
        value = getattr(args, name)
        if value is not None:
            return value
        return QUICK[name] if quick else defaults[name]

    n_seeds = args.seeds if args.seeds is not None else (QUICK["seeds"] if quick else len(defaults["seeds"]))
    cfg = BenchConfig(
        settings=settings,
        edits=pick("edits"),
        rounds=pick("rounds"),
        seeds=list(range(args.first_seed, args.first_seed + n_seeds)),
        writing_tokens=pick("writing_tokens"),
        code_tokens=pick("code_tokens"),
        max_prompt_tokens=pick("max_prompt_tokens"),
        threads=args.threads,
        keep_versions=args.keep_versions,
        quick=quick,
    )
    if args.learners:
        cfg.pipeline.learners = [x.strip() for x in args.learners.split(",") if x.strip()]
        cfg.pipeline.__post_init__()
    apply_settings(cfg.pipeline, args.set)
    return cfg


def _defaults() -> dict:
    """BenchConfig's defaults: the one place they are set."""
    from training.bench.harness import BenchConfig

    out = {}
    for f in dataclasses.fields(BenchConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING and f.name == "seeds":
            out[f.name] = f.default_factory()
    return out


def resolve_model(args: argparse.Namespace, work: Path) -> Path:
    from server import model_store

    def say(msg: str) -> None:
        print(msg, file=sys.stderr)

    if args.model:
        return model_store.resolve_model_dir(args.model, progress=say)
    default = model_store.resolve_model_dir(None, progress=say)
    if not args.quick:
        return default
    try:
        from tests.tiny_model import build_tiny_model
    except ImportError as exc:
        raise model_store.ModelFolderError(
            "--quick builds its tiny model with tests/tiny_model.py, found only in a source checkout: run it "
            "from the repository's root, or pass --model"
        ) from exc
    return build_tiny_model(work / "tiny-model", default)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.render:
        return render_only(Path(args.render))
    try:
        cfg = config_from_args(args)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from server import paths

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = paths.data_home() / "bench" / stamp
    out = Path(args.out).expanduser() if args.out else base
    work = Path(args.work).expanduser() if args.work else base / "runs"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    _quiet()
    from server import model_store

    try:
        model_dir = resolve_model(args, work)
    except model_store.ModelFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = "python -m training.bench " + shlex.join(argv) if argv else "python -m training.bench"
    return run(cfg, model_dir, out, work, command, args.label or ("quick" if cfg.quick else ""), args.progress)


def finish(results: dict, out: Path, load_seconds: float = 0.0) -> None:
    """Write results.json, the plots and report.md; the extrapolation uses today's defaults."""
    from training.bench import report
    from training.bench.harness import DEFAULT_SETTINGS

    results["load_seconds"] = load_seconds or results.get("load_seconds", 0.0)
    summary = report.timing_summary(results["runs"])
    results["timings"] = summary
    results.pop("extrapolated", None)
    if not results["config"].get("quick") and results["runs"]:  # a tiny model's rates say nothing of the default's
        d = _defaults()
        n_runs = len(DEFAULT_SETTINGS) * len(d["seeds"])
        results["extrapolated"] = {
            "runs": n_runs, "edits": d["edits"], "rounds": d["rounds"],
            **report.extrapolate(summary, d["edits"], d["rounds"], n_runs, results["load_seconds"]),
        }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    plots = report.plot_rounds(results["runs"], out / "plots")
    (out / "report.md").write_text(report.render(results, plots, out), encoding="utf-8")


def render_only(out: Path) -> int:
    try:
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {out / 'results.json'}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finish(results, out)
    print(json.dumps({"report": str(out / "report.md")}))
    return EXIT_OK


def run(cfg, model_dir: Path, out: Path, work: Path, command: str, label: str, progress: str) -> int:
    from training.bench.harness import Bench
    from training.pipeline import lower_priority

    lower_priority()
    bench = Bench(model_dir, cfg, work, progress)
    started = time.time()
    results = {
        "label": label,
        "command": command,
        "model": str(model_dir),
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "config": cfg.as_dict(),
        "learners": _learner_record(cfg.pipeline),
        "runs": [],
        "complete": False,
    }

    def save(_run=None) -> None:
        results["seconds"] = time.time() - started
        finish(results, out, bench.load_seconds)

    try:
        results["runs"] = []
        bench.run(on_run=lambda r: (results["runs"].append(r), save()))
    except KeyboardInterrupt:
        print("redline bench: stopped; the report covers the runs that finished", file=sys.stderr)
        save()
        return EXIT_ERROR
    results["complete"] = True
    save()
    print(json.dumps({"report": str(out / "report.md"), "results": str(out / "results.json"),
                      "seconds": round(results["seconds"], 1)}))  # fmt: skip
    return EXIT_OK


def _learner_record(pcfg) -> dict:
    from dataclasses import asdict, is_dataclass

    return {"learners": list(pcfg.learners),
            **{k: asdict(v) for k, v in vars(pcfg).items() if is_dataclass(v) and not isinstance(v, type)}}  # fmt: skip


def _quiet() -> None:
    from training.cli import _quiet_libraries

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
