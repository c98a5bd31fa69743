"""The `redline` command. Every subcommand has --help; help texts are the functions' docstrings."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the language server on stdio (what the editor starts)."""
    from server.lsp import serve_stdio

    if args.model:
        os.environ["REDLINE_MODEL"] = args.model
    serve_stdio(model_path=args.model)
    return 0


def cmd_model_prepare(args: argparse.Namespace) -> int:
    """Convert the embedded default model into a cached safetensors folder (once), or check a folder."""
    from server import model_store

    try:
        folder = model_store.resolve_model_dir(args.model, progress=print)
        info = model_store.validate_model_folder(folder)
    except model_store.ModelFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_info_dict(info), indent=2))
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    """Show the model folder Redline would load, without converting anything."""
    from server import model_store

    folder = args.model or str(model_store.default_model_dir())
    try:
        info = model_store.validate_model_folder(folder)
    except model_store.ModelFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_info_dict(info), indent=2))
    return 0


def _when(text: str | None) -> float | None:
    """A time given as an ISO date/time ("2026-11-01", "2026-11-01T09:30") or an age ("7d", "12h")."""
    import datetime
    import re
    import time

    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([dhm])", text.strip())
    if m:
        unit = {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise SystemExit(f"error: cannot read the time {text!r}: use 2026-11-01, 2026-11-01T09:30 or 7d/12h")


def _open_store():
    from server.store.store import Store

    store = Store()
    if store.recovered_from is not None:
        print(store.recovery_message, file=sys.stderr)
    return store


def cmd_stats(args: argparse.Namespace) -> int:
    """Suggestions, acceptance rate and mean edit cost: overall, by language, by policy, by day."""
    stats = _open_store().stats()
    if args.json:
        print(json.dumps(stats, indent=2, default=str))
        return 0
    total = stats.get("total", stats)
    print(_stats_line("all", total))
    for section in ("by_language", "by_policy", "by_kind", "by_day"):
        groups = stats.get(section) or {}
        if groups:
            print(f"\n{section.replace('_', ' ')}:")
            for name, figures in (groups.items() if isinstance(groups, dict) else enumerate(groups)):
                print(_stats_line(str(name), figures))
    return 0


def _stats_line(name: str, f: dict) -> str:
    rate = f.get("acceptance_rate")
    cost = f.get("mean_cost")
    return (
        f"  {name:<16} suggestions {f.get('suggestions', 0):>6}  accepted {f.get('accepted', 0):>6}"
        f"  rate {'-' if rate is None else f'{100 * rate:.0f}%':>5}"
        f"  settled {f.get('outcomes', 0):>6}  mean edit cost {'-' if cost is None else f'{cost:.3f}'}"
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Write settled (context, suggestion, edit) triples as JSONL that trl reads as it is."""
    n = _open_store().export(args.output, args.format, since=_when(args.since), until=_when(args.until))
    print(f"wrote {n} rows to {args.output} ({args.format})")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Delete recorded suggestions and edits: all, a time range, or a folder; the space is reclaimed."""
    if not (args.all or args.since or args.until or args.folder):
        print("error: say what to forget: --all, --since/--until, or --folder", file=sys.stderr)
        return 2
    if args.all and (args.since or args.until or args.folder):
        print("error: --all cannot be combined with --since, --until or --folder", file=sys.stderr)
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: add --yes to confirm (nothing was deleted)", file=sys.stderr)
            return 2
        if input("Delete these records for good? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    from server import versions
    from server.store import reports

    store = _open_store()
    since, until = _when(args.since), _when(args.until)
    ids = set(reports.select_ids(store.db, since=since, until=until, folder=args.folder, everything=args.all))
    n = store.forget(everything=args.all, since=since, until=until, folder=args.folder)
    print(f"forgot {n} suggestions and everything recorded about them")
    # Adapters trained on those edits hold what they learnt from them: they go too.
    removed = versions.forget_edits(ids)
    if removed:
        print(f"deleted {len(removed)} model versions trained on them: {', '.join(removed)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Retrain from the captured edits now (runs the trainer; its options follow `--`)."""
    import subprocess

    rest = args.trainer_args[1:] if args.trainer_args[:1] == ["--"] else args.trainer_args
    cmd = [sys.executable, "-m", "training", "train", *rest]
    return subprocess.call(cmd)


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark the learners against simulated users and write a report (its options follow `--`)."""
    import subprocess

    rest = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    cmd = [sys.executable, "-m", "training.bench", *rest]
    return subprocess.call(cmd)


def cmd_model_rollback(args: argparse.Namespace) -> int:
    """Make the previous model version active again (a running server switches within seconds)."""
    from server import versions

    try:
        version = versions.rollback()
    except versions.VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"active version: {version.id}" if version else "active: the base model (no trained version)")
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    """List the trained model versions, newest first, with their validation log-loss (what policies
    are ranked by) and cost."""
    from server import versions

    active = versions.read_pointer().get("version")
    found = versions.list_versions()
    if not found:
        print("no trained versions yet: the base model answers")
    for v in sorted(found, key=lambda v: v.id, reverse=True):
        figures = ", ".join(f"{p} {_num(f.get('nll'))}/{_num(f.get('cost'))}" for p, f in v.validation.items())
        print(f"{'*' if v.id == active else ' '} {v.id}  served: {', '.join(v.served) or '-'}  "
              f"validation log-loss/cost: {figures}")
    return 0


def _num(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _info_dict(info) -> dict:
    return {
        "path": str(info.path),
        "model_type": info.model_type,
        "architectures": list(info.architectures),
        "weights_mb": round(info.weights_bytes / 1e6, 1),
        "fill_in_the_middle": info.fim,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redline",
        description="Redline: a local writing and coding assistant that learns from your edits.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, parent=sub):
        p = parent.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        p.set_defaults(func=func)
        return p

    serve = add("serve", cmd_serve)
    serve.add_argument("--model", help="local Hugging Face model folder (default: the embedded model)")

    stats = add("stats", cmd_stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    export = add("export", cmd_export)
    export.add_argument("output", help="JSONL file to write (created 0600)")
    export.add_argument("--format", choices=["sft", "preference"], default="sft",
                        help="sft: prompt/completion; preference: prompt/chosen/rejected")
    export.add_argument("--since", help="only suggestions from this time on (2026-11-01, 7d)")
    export.add_argument("--until", help="only suggestions before this time")
    forget = add("forget", cmd_forget)
    forget.add_argument("--all", action="store_true", help="everything")
    forget.add_argument("--since", help="suggestions from this time on (2026-11-01, 7d)")
    forget.add_argument("--until", help="suggestions before this time")
    forget.add_argument("--folder", help="suggestions made in documents under this folder")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    train = add("train", cmd_train)
    train.add_argument("trainer_args", nargs=argparse.REMAINDER,
                       help="options for the trainer (see `redline train -- --help`)")

    bench = add("bench", cmd_bench)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER,
                       help="options for the bench (see `redline bench -- --help`)")

    model = sub.add_parser("model", help="prepare and inspect model folders", description="Model folders.")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    prep = add("prepare", cmd_model_prepare, model_sub)
    prep.add_argument("--model", help="check this folder instead of preparing the default")
    add("rollback", cmd_model_rollback, model_sub)
    add("list", cmd_model_list, model_sub)
    info = add("info", cmd_model_info, model_sub)
    info.add_argument("--model", help="model folder to inspect")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,  # stdout carries LSP messages when serving
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # pygls logs every message at INFO, document text included: too much for an output channel.
        logging.getLogger("pygls").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
