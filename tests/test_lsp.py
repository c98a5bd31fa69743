"""The language server end to end over real LSP, with the real default model."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from lsprotocol import types

from server import protocol
from tests.lsp_harness import end_position, inline, open_doc, start_server, status, stop_server, wait_ready

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROSE = (
    "# Trip notes\n\nWe left Edinburgh early on Saturday morning and drove north along the coast. "
    "The weather was cold but clear, and"
)
CODE = (
    "import os\n\n\ndef list_python_files(folder):\n"
    '    """Return the names of the Python files in folder."""\n'
    "    names = []\n    for name in os.listdir(folder):\n        if name.endswith(\".py\"):\n"
    "            names.append("
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(default_model_dir, tmp_path_factory):
    c = await start_server(default_model_dir, tmp_path_factory.mktemp("home"))
    st = await wait_ready(c)
    assert st["state"] == "ready", st
    yield c
    await stop_server(c)


async def test_capabilities_announced(client):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert set(protocol.SERVER_COMMANDS) <= set(caps.execute_command_provider.commands)


async def test_status_notifications_reach_the_client(client):
    states = [s.state if hasattr(s, "state") else s["state"] for s in client.statuses]
    assert "starting" in states and "ready" in states


async def test_inline_completion_on_prose(client):
    uri = "file:///work/notes.md"
    open_doc(client, uri, "markdown", PROSE)
    result = await inline(client, uri, end_position(PROSE))
    assert len(result.items) == 1
    item = result.items[0]
    assert item.insert_text.strip()
    assert "\n" not in item.insert_text  # prose stops at the end of a sentence or line
    assert item.range.start == end_position(PROSE)
    assert item.command.command == protocol.CMD_ACCEPTED
    assert isinstance(item.command.arguments[0], str) and len(item.command.arguments[0]) == 32


async def test_inline_completion_on_code(client):
    uri = "file:///work/files.py"
    open_doc(client, uri, "python", CODE)
    result = await inline(client, uri, end_position(CODE))
    assert len(result.items) == 1
    text = result.items[0].insert_text
    assert text.strip() and "\n" not in text  # single line after code on the cursor's line


async def test_typing_through_a_suggestion_reuses_it(client):
    uri = "file:///work/through.py"
    open_doc(client, uri, "python", CODE)
    first = (await inline(client, uri, end_position(CODE))).items[0].insert_text
    if len(first) < 2:
        pytest.skip("suggestion too short to type through")
    typed = CODE + first[0]
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=typed)],
        )
    )
    second = (await inline(client, uri, end_position(typed))).items
    assert second and second[0].insert_text == first[1:]


async def test_lsp_completion_item(client):
    uri = "file:///work/complete.py"
    open_doc(client, uri, "python", CODE)
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=end_position(CODE)
        )
    )
    assert result.items, "expected one completion item"
    item = result.items[0]
    assert item.text_edit.new_text.strip()
    assert item.command.command == protocol.CMD_ACCEPTED


async def test_newer_request_cancels_the_one_in_flight(client):
    uri = "file:///work/cancel.md"
    open_doc(client, uri, "markdown", PROSE)
    before = (await status(client))["counters"]
    first = asyncio.ensure_future(inline(client, uri, end_position(PROSE)))
    await asyncio.sleep(0.05)  # the first is decoding now
    text2 = PROSE + " the"
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text2)],
        )
    )
    second = await inline(client, uri, end_position(text2))
    first_result = await first
    after = (await status(client))["counters"]
    assert not first_result.items  # superseded: nothing shown, the model stopped early
    assert after["cancelled"] >= before["cancelled"] + 1
    assert len(second.items) == 1


async def test_client_cancel_request(client):
    uri = "file:///work/cancel2.md"
    text = PROSE + " then"
    open_doc(client, uri, "markdown", text)
    before = (await status(client))["counters"]
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=end_position(text),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )
    msg_id = "cancel-me"
    future = client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
    await asyncio.sleep(0.05)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wait_for(asyncio.wrap_future(future), timeout=30)
    after = (await status(client))["counters"]
    assert after["cancelled"] >= before["cancelled"] + 1


async def test_acceptance_command(client):
    uri = "file:///work/accept.md"
    open_doc(client, uri, "markdown", PROSE)
    item = (await inline(client, uri, end_position(PROSE))).items[0]
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=item.command.command, arguments=item.command.arguments)
    )
    assert result["known"] is True
    unknown = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_ACCEPTED, arguments=["0" * 32])
    )
    assert unknown["known"] is False


async def test_acceptance_command_without_id_is_an_error(client):
    with pytest.raises(Exception, match="suggestion_id"):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=protocol.CMD_ACCEPTED, arguments=[])
        )


async def test_unopened_document_is_an_error(client):
    with pytest.raises(Exception, match="not open"):
        await inline(client, "file:///etc/passwd", types.Position(line=0, character=0))


@pytest.mark.parametrize(
    "position,match",
    [
        (types.Position(line=99, character=0), "past the end of the document"),
        (types.Position(line=0, character=500), "past the end of line"),
    ],
)
async def test_out_of_range_position_is_an_error(client, position, match):
    uri = "file:///work/range.md"
    open_doc(client, uri, "markdown", "short\n")
    with pytest.raises(Exception, match=match):
        await inline(client, uri, position)


async def send_raw(client, message: dict):
    """Write a JSON-RPC request as is (the typed client would refuse to build a malformed one)."""
    from concurrent.futures import Future

    future = Future()
    client.protocol._request_futures[message["id"]] = future
    client.protocol._send_data(message)
    return await asyncio.wait_for(asyncio.wrap_future(future), timeout=10)


@pytest.mark.parametrize(
    "params",
    [
        {"textDocument": {"uri": "file:///x.md"}},  # no position
        {"textDocument": {"uri": "file:///x.md"}, "position": {"line": "one", "character": 0}},
        {"textDocument": 7, "position": {"line": 0, "character": 0}, "context": {"triggerKind": 1}},
    ],
)
async def test_malformed_params_get_an_error_reply(client, params):
    # pygls alone logs these and never answers; the server must reply with InvalidParams.
    with pytest.raises(Exception, match="Invalid params"):
        await send_raw(
            client,
            {"jsonrpc": "2.0", "id": f"bad-{id(params)}", "method": "textDocument/inlineCompletion", "params": params},
        )
    assert (await status(client))["state"] in ("ready", "thinking")  # and it is still serving


async def test_pause_and_resume(client):
    uri = "file:///work/pause.md"
    open_doc(client, uri, "markdown", PROSE)
    paused = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_PAUSE, arguments=[])
    )
    assert paused["state"] == "paused"
    assert (await inline(client, uri, end_position(PROSE))).items == ()
    resumed = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_RESUME, arguments=[])
    )
    assert resumed["state"] == "ready"


async def test_binary_document_gets_no_suggestion(client):
    uri = "file:///work/blob.txt"
    text = "abc\x00\x01\x02def"
    open_doc(client, uri, "plaintext", text)
    assert (await inline(client, uri, end_position(text))).items == ()


async def test_languages_setting_is_honoured(client):
    uri = "file:///work/main.rs"
    open_doc(client, uri, "rust", "fn main() {\n    let x = ")
    assert (await inline(client, uri, types.Position(line=1, character=12))).items == ()
