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

    model = sub.add_parser("model", help="prepare and inspect model folders", description="Model folders.")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    prep = add("prepare", cmd_model_prepare, model_sub)
    prep.add_argument("--model", help="check this folder instead of preparing the default")
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
