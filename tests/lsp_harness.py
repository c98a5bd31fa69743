"""Start the real server as a subprocess and talk real LSP to it (pytest-lsp's client)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from lsprotocol import types
from pytest_lsp import ClientServerConfig, client_capabilities

from server import protocol


async def start_server(model_dir: Path, home: Path, init_options: dict | None = None, extra_args=()):
    env = dict(os.environ, REDLINE_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "server", "serve", "--model", str(model_dir), *extra_args],
        server_env=env,
    )
    client = await config.start()
    client.statuses = []

    @client.feature(protocol.NOTIFY_STATUS)
    def _status(params):  # collected, never awaited: see the trap in EDITOR-TESTING.md
        client.statuses.append(params)

    client.init_result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            initialization_options=init_options or {},
        )
    )
    return client


async def status(client) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_STATUS, arguments=[])
    )


async def wait_ready(client, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await status(client)
        if st["state"] in ("ready", "paused", "error"):
            return st
        await asyncio.sleep(0.2)
    raise TimeoutError("the server did not load its model in time")


def open_doc(client, uri: str, language: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)
        )
    )


def end_position(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1].encode("utf-16-le")) // 2)


async def inline(client, uri: str, position: types.Position):
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )


async def stop_server(client) -> None:
    await client.shutdown_session()
    await client.stop()
