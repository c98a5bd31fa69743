"""Capture end to end: the real server over LSP, the real model, the exact rows in SQLite."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time

import pytest
import pytest_asyncio
from lsprotocol import types

from server import protocol
from server.capture.cost import edit_cost
from tests.lsp_harness import end_position, inline, open_doc, start_server, stop_server, wait_ready

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROSE = (
    "# Trip notes\n\nWe left Edinburgh early on Saturday morning and drove north along the coast. "
    "The weather was cold but clear, and"
)


def rows(home, sql, args=()):
    con = sqlite3.connect(f"file:{home / 'redline.db'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def outcome(home, suggestion_id):
    found = rows(home, "SELECT * FROM outcomes WHERE suggestion_id = ?", (suggestion_id,))
    return found[0] if found else None


async def wait_for_outcome(home, suggestion_id, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = outcome(home, suggestion_id)
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"no outcome for {suggestion_id} after {timeout} s")


def insert(client, uri, version, position, text):
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=position, end=position), text=text
                )
            ],
        )
    )


def replace(client, uri, version, start, end, text):
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(start=start, end=end), text=text)
            ],
        )
    )


def save(client, uri):
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("capture-home")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(default_model_dir, home):
    c = await start_server(default_model_dir, home, {"settleSeconds": 1})
    assert (await wait_ready(c))["state"] == "ready"
    yield c
    await stop_server(c)


async def suggest(client, uri, text):
    result = await inline(client, uri, end_position(text))
    assert result.items, "the model gave no suggestion for this text"
    item = result.items[0]
    return item, item.command.arguments[0]


async def test_accept_edit_settle_gives_the_exact_row(client, home):
    uri = "file:///work/trip.md"
    open_doc(client, uri, "markdown", PROSE)
    item, sid = await suggest(client, uri, PROSE)
    y = item.insert_text
    pos = end_position(PROSE)
    insert(client, uri, 2, pos, y)  # what the editor does on Tab...
    await client.workspace_execute_command_async(  # ...then it runs the item's command
        types.ExecuteCommandParams(command=protocol.CMD_ACCEPTED, arguments=[sid])
    )
    # The user rewrites the suggestion's first few characters.
    cut = min(4, len(y))
    replace(client, uri, 3, pos, types.Position(line=pos.line, character=pos.character + cut), "WOW ")
    save(client, uri)
    row = await wait_for_outcome(home, sid)
    y_final = "WOW " + y[cut:]
    assert row["final_text"] == y_final
    assert row["kind"] == "edited"
    assert row["settle_reason"] == "saved"
    assert row["cost"] == pytest.approx(edit_cost(y, y_final).cost)
    shown = rows(home, "SELECT * FROM suggestions WHERE id = ?", (sid,))[0]
    assert shown["suggestion"] == y
    assert shown["accept_source"] == "command" and shown["accepted_at"] is not None
    assert shown["prompt"].endswith("The weather was cold but clear, and")
    assert shown["language"] == "markdown" and shown["uri"] == uri
    assert shown["model_version"].startswith("base:") and shown["policy"] == "base"
    assert shown["latency_ms"] > 0


async def test_idle_settle_of_an_unchanged_acceptance(client, home):
    uri = "file:///work/idle.md"
    open_doc(client, uri, "markdown", PROSE)
    item, sid = await suggest(client, uri, PROSE)
    insert(client, uri, 2, end_position(PROSE), item.insert_text)  # no command: inferred
    row = await wait_for_outcome(home, sid)  # settles after 1 s without edits
    assert row["kind"] == "accepted" and row["cost"] == 0
    assert row["settle_reason"] == "idle"
    assert rows(home, "SELECT accept_source FROM suggestions WHERE id = ?", (sid,))[0]["accept_source"] == "inferred"


async def test_partial_accept_word_by_word(client, home):
    uri = "file:///work/partial.md"
    open_doc(client, uri, "markdown", PROSE)
    item, sid = await suggest(client, uri, PROSE)
    words = item.insert_text.split(" ")
    if len(words) < 3:
        pytest.skip("suggestion too short for a partial accept")
    first = " ".join(words[:2]) + " "  # Ctrl+Right twice: two words and the space after them
    insert(client, uri, 2, end_position(PROSE), first)
    save(client, uri)
    row = await wait_for_outcome(home, sid)
    assert row["kind"] == "partial"
    assert row["final_text"].strip() == first.strip()


async def test_rejection_with_typed_replacement(client, home):
    uri = "file:///work/reject.md"
    open_doc(client, uri, "markdown", PROSE)
    item, sid = await suggest(client, uri, PROSE)
    typed = " we walked for hours by the sea. Then we ate."
    assert not item.insert_text.startswith(typed[:3])
    pos = end_position(PROSE)
    for i, ch in enumerate(typed):  # typed key by key, as a person does
        insert(client, uri, 2 + i, types.Position(line=pos.line, character=pos.character + i), ch)
    save(client, uri)
    row = await wait_for_outcome(home, sid)
    assert row["kind"] == "rejected_typed"
    assert row["final_text"].strip() == "we walked for hours by the sea."  # bounded to one sentence


async def test_excluded_file_leaves_no_row(client, home):
    uri = "file:///work/.env"
    text = "API_URL=https://example.org\nNAME=the weather was cold but clear, and"
    open_doc(client, uri, "plaintext", text)
    result = await inline(client, uri, end_position(text))
    assert not result.items
    assert rows(home, "SELECT count(*) AS n FROM suggestions WHERE uri = ?", (uri,))[0]["n"] == 0


async def test_database_is_private(client, home):
    db = home / "redline.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700


async def test_kill_after_settle_keeps_the_row_and_restart_settles_spans_in_flight(default_model_dir, tmp_path):
    home = tmp_path / "home"
    c = await start_server(default_model_dir, home, {"settleSeconds": 600})
    assert (await wait_ready(c))["state"] == "ready"
    uri_a, uri_b = "file:///work/a.md", "file:///work/b.md"
    open_doc(c, uri_a, "markdown", PROSE)
    open_doc(c, uri_b, "markdown", PROSE)
    item_a, sid_a = await suggest(c, uri_a, PROSE)
    insert(c, uri_a, 2, end_position(PROSE), item_a.insert_text)
    save(c, uri_a)  # settled now...
    item_b, sid_b = await suggest(c, uri_b, PROSE)
    insert(c, uri_b, 2, end_position(PROSE), item_b.insert_text)  # ...and this one is in flight
    await wait_for_outcome(home, sid_a)
    await asyncio.sleep(2.5)  # the server saves spans in flight about once a second
    c._server.kill()  # kill -9: no shutdown, no settling
    await c._server.wait()
    assert outcome(home, sid_a)["kind"] == "accepted"
    assert outcome(home, sid_b) is None
    c2 = await start_server(default_model_dir, home, {"settleSeconds": 600})
    try:
        row = await wait_for_outcome(home, sid_b)
        assert row["settle_reason"] == "restart"
        assert row["final_text"] == item_b.insert_text
    finally:
        await stop_server(c2)
    try:
        await c.stop()
    except Exception:
        pass
