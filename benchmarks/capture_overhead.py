"""Does capture slow suggestions down? The real server over real LSP, capture on and off, side by side.

Starts `python -m server serve` twice on the same default model — once with `redline.capture` on,
once off — and replays the same typing session against each: a didChange for every keystroke, an
inline completion request after it, and every few suggestions an acceptance (the edit that inserts it
and the item's command), so that capture has spans to follow, outcomes to settle and rows to write.
Prints p50/p95 request-to-response latency for both and their ratio, and the database size.

  .venv/bin/python benchmarks/capture_overhead.py            # about 3 minutes on 2 cores
  .venv/bin/python benchmarks/capture_overhead.py --requests 60 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsprotocol import types  # noqa: E402

from benchmarks.latency import machine, pct  # noqa: E402
from server import model_store, protocol  # noqa: E402
from tests.lsp_harness import end_position, inline, open_doc, start_server, stop_server, wait_ready  # noqa: E402
from training.corpora import iterater_documents, stdlib_python_files  # noqa: E402


def sessions(n_requests: int, seed: int) -> list[tuple[str, str, str]]:
    """(uri, language, text typed so far) for each request, in typing order."""
    rng = random.Random(seed)
    out = []
    docs = iterater_documents()
    files = stdlib_python_files()
    while len(out) < n_requests:
        if rng.random() < 0.5:
            _, text = rng.choice(docs)
            uri, lang = f"file:///bench/doc{len(out)}.md", "markdown"
        else:
            text = rng.choice(files).read_text(encoding="utf-8", errors="replace")
            uri, lang = f"file:///bench/code{len(out)}.py", "python"
        start = rng.randrange(200, max(201, len(text) - 400))
        for k in range(6):
            out.append((uri, lang, text[: start + k]))
    return out[:n_requests]


async def replay(model_dir: Path, capture: bool, requests, accept_every: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="redline-bench-"))
    client = await start_server(model_dir, home, {"capture": capture, "settleSeconds": 2})
    await wait_ready(client)
    latencies = []
    opened: dict[str, int] = {}
    current: dict[str, str] = {}
    for i, (uri, lang, text) in enumerate(requests):
        if uri not in opened:
            open_doc(client, uri, lang, text)
            opened[uri] = 1
        elif current[uri] != text:
            opened[uri] += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=opened[uri]),
                    content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
                )
            )
        current[uri] = text
        t = time.perf_counter()
        result = await inline(client, uri, end_position(text))
        latencies.append((time.perf_counter() - t) * 1000)
        if result.items and i % accept_every == 0:
            item = result.items[0]
            accepted = text + item.insert_text
            opened[uri] += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=opened[uri]),
                    content_changes=[types.TextDocumentContentChangePartial(
                        range=types.Range(start=end_position(text), end=end_position(text)),
                        text=item.insert_text)],
                )
            )
            current[uri] = accepted
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=protocol.CMD_ACCEPTED, arguments=item.command.arguments)
            )
    await stop_server(client)
    db = home / "redline.db"
    rows = 0
    if db.exists():
        import sqlite3

        con = sqlite3.connect(db)
        rows = con.execute("SELECT count(*) FROM suggestions").fetchone()[0]
        con.close()
    size = sum(p.stat().st_size for p in home.glob("redline.db*"))
    return {"latencies": latencies, "rows": rows, "db_bytes": size}


async def main_async(args) -> int:
    folder = model_store.resolve_model_dir(args.model, progress=lambda m: print(m, file=sys.stderr))
    requests = sessions(args.requests, args.seed)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print("machine:", json.dumps(machine()))
    results = {True: [], False: []}
    per_round: dict[bool, list[list[float]]] = {True: [], False: []}
    extra = {}
    for r in range(args.rounds):  # alternate, so drift on a shared machine hits both alike
        for capture in ((True, False) if r % 2 == 0 else (False, True)):
            out = await replay(folder, capture, requests, args.accept_every)
            results[capture] += out["latencies"]
            per_round[capture].append(out["latencies"])
            if capture:
                extra = out
            print(f"round {r + 1} capture {'on ' if capture else 'off'}: p50 {pct(out['latencies'], 0.5):.0f} ms",
                  file=sys.stderr)
    on, off = results[True], results[False]
    print(f"\n| {'':28} | {'capture on':>12} | {'capture off':>12} | {'on / off':>8} |")
    print(f"|{'-' * 30}|{'-' * 14}|{'-' * 14}|{'-' * 10}|")
    for label, q in (("p50 ms", 0.5), ("p95 ms", 0.95)):
        a, b = pct(on, q), pct(off, q)
        print(f"| {label:28} | {a:12.1f} | {b:12.1f} | {a / b:8.3f} |")
    print(f"| {'mean ms':28} | {statistics.mean(on):12.1f} | {statistics.mean(off):12.1f} | "
          f"{statistics.mean(on) / statistics.mean(off):8.3f} |")
    # The same request, on and off, in the same round: the median of those ratios is the figure least
    # moved by one slow round. The off/off ratio between rounds is the noise floor it stands against.
    paired = [a / b for ra, rb in zip(per_round[True], per_round[False]) for a, b in zip(ra, rb) if b > 0]
    print(f"| {'median of paired ratios':28} | {'':12} | {'':12} | {statistics.median(paired):8.3f} |")
    if len(per_round[False]) > 1:
        noise = [a / b for a, b in zip(per_round[False][0], per_round[False][1]) if b > 0]
        print(f"| {'noise: off round 1 / round 2':28} | {'':12} | {'':12} | {statistics.median(noise):8.3f} |")
    print(f"\nrequests per setting: {len(on)} ({args.rounds} rounds); suggestions recorded in the last "
          f"capture-on round: {extra.get('rows')}; database with WAL: {extra.get('db_bytes', 0) / 1e6:.2f} MB")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the embedded default model)")
    ap.add_argument("--requests", type=int, default=60, help="inline completion requests per round")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per setting, alternating on and off")
    ap.add_argument("--accept-every", type=int, default=3, help="accept every Nth suggestion")
    ap.add_argument("--seed", type=int, default=0)
    return asyncio.run(main_async(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
