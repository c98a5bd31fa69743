"""`python -m training train`: train the learners on the captured edits and write a model version.

Progress goes to stderr: bars on a terminal, JSON lines otherwise (see training.progress). The run's
summary is one JSON object on stdout. Exit status: 0 a version was written (activated or not, the
summary says which and why), 2 bad arguments, 3 nothing to train yet (too few edits), 4 another training
run is in progress, 1 anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOTHING, EXIT_BUSY = 0, 1, 2, 3, 4


def _sections():
    from training.pipeline import PipelineConfig

    cfg = PipelineConfig(learners=["sup"])
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))}


def _settings_help() -> str:
    lines = ["settings for --set SECTION.FIELD=VALUE (defaults shown):"]
    for section, obj in _sections().items():
        fields = ", ".join(f"{f.name}={getattr(obj, f.name)!r}" for f in dataclasses.fields(obj))
        lines.append(f"  {section}: {fields}")
    return "\n".join(lines)


def _coerce(default, text: str):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, not {text!r}")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, (list, tuple)):
        kind = type(default[0]) if default else str
        return [kind(v) for v in text.split(",") if v.strip()]
    if isinstance(default, str):
        return text
    return json.loads(text)


def apply_settings(cfg, settings: list[str]) -> None:
    """Apply `section.field=value` overrides to a PipelineConfig in place (raises ValueError)."""
    for item in settings:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set takes SECTION.FIELD=VALUE, not {item!r}")
        obj = getattr(cfg, section, None)
        if obj is None or not dataclasses.is_dataclass(obj):
            raise ValueError(f"unknown settings section {section!r}")
        if name not in {f.name for f in dataclasses.fields(obj)}:
            raise ValueError(f"{section} has no setting {name!r}")
        new = _coerce(getattr(obj, name), value)
        if getattr(type(obj), "__dataclass_params__").frozen:
            setattr(cfg, section, dataclasses.replace(obj, **{name: new}))
        else:
            setattr(obj, name, new)
            if hasattr(obj, "__post_init__"):
                obj.__post_init__()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train the learners on the captured edits and write a model version",
        description=__doc__,
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data-home", help="Redline's data folder (default: $REDLINE_HOME or the user data folder)")
    train.add_argument("--model", help="base model folder (default: $REDLINE_MODEL or the embedded default model)")
    train.add_argument("--db", help="database to read (default: redline.db in the data folder)")
    train.add_argument("--max-edits", type=int, help="train on the newest N edits only")
    train.add_argument("--learners", help="comma-separated, from: sup, pref, early, cost, mixture (default: all available)")
    train.add_argument("--dry-run", action="store_true", help="load, filter and split the edits, say what would train")
    train.add_argument("--no-activate", action="store_true", help="write the version but leave the active one")
    train.add_argument("--force", action="store_true", help="activate even when the validation gate refuses")
    train.add_argument("--warm-start", action="store_true", help="continue from the active version's adapters")
    train.add_argument("--incremental", action="store_true",
                       help="with --warm-start: train only on the edits the active version has not trained on")  # fmt: skip
    train.add_argument("--threads", type=int, default=0, metavar="N",
                       help="CPU threads; 0 (default): every core while the machine is otherwise idle, one fewer "
                            "per core something else keeps busy")  # fmt: skip
    train.add_argument("--progress", default="auto", choices=("auto", "bars", "json", "both", "none"),
                       help="bars on a terminal, JSON lines on stderr otherwise (auto)")  # fmt: skip
    train.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override a setting, e.g. --set sup.max_steps=50 (repeatable; list below)")  # fmt: skip
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    if args.data_home:
        os.environ["REDLINE_HOME"] = str(Path(args.data_home).expanduser())
    from server import model_store, paths
    from training import data, pipeline
    from training.progress import Progress

    try:
        cfg = pipeline.PipelineConfig()
        if args.learners:
            cfg.learners = [x.strip() for x in args.learners.split(",") if x.strip()]
            cfg.__post_init__()
        apply_settings(cfg, args.set)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cfg.max_edits = args.max_edits
    cfg.activate = not args.no_activate
    cfg.force = args.force
    cfg.warm_start = args.warm_start
    cfg.incremental = args.incremental
    if args.threads < 0:
        print("error: --threads takes a count of threads, or 0 to adapt to the machine", file=sys.stderr)
        return EXIT_USAGE
    cfg.threads = args.threads
    if args.incremental and not args.warm_start:
        print("error: --incremental continues the active version's adapters: add --warm-start", file=sys.stderr)
        return EXIT_USAGE

    progress = Progress(args.progress)
    pipeline.lower_priority()
    _quiet_libraries()
    try:
        model_dir = model_store.resolve_model_dir(
            args.model or os.environ.get("REDLINE_MODEL") or None, progress=lambda m: print(m, file=sys.stderr)
        )
        db = Path(args.db).expanduser() if args.db else paths.database_path()
        result = pipeline.run(model_dir, db, cfg, progress=progress, dry_run=args.dry_run)
    except (pipeline.NothingToTrain, data.TooFewEdits, FileNotFoundError) as exc:
        _summary({"type": "result", "version": None, "activated": False, "reason": str(exc)})
        print(f"redline train: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    except pipeline.TrainerBusy as exc:
        print(f"redline train: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except model_store.ModelFolderError as exc:
        print(f"redline train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        progress.close()
    _summary(result.as_dict())
    return EXIT_OK


def _summary(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def _quiet_libraries() -> None:
    """Keep stderr for progress: library warnings and their own bars off."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "trl", "peft", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return cmd_train(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
