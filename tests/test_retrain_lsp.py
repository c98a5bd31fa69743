"""Retraining from the editor: the real server starts the real trainer, follows it, and serves the result."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
import pytest_asyncio
from lsprotocol import types

from server import protocol
from server.store import Store, SuggestionRecord
from tests.lsp_harness import end_position, inline, open_doc, start_server, status, stop_server, wait_ready
from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = ["--learners", "sup", "--set", "sup.max_steps=12", "--set", "sup.learning_rate=0.01",
        "--set", "sup.min_edits=4"]


def seed_edits(home, n=16):
    """Edits as capture records them: the user always ends the handler with `return event`."""
    with Store(home / "redline.db") as store:
        now = time.time() - 3600
        for i in range(n):
            prompt = f"def handler_{i}(event):\n    log(event)\n    "
            rec = SuggestionRecord(uri=f"file:///p/h{i}.py", suggestion="pass", prompt=prompt,
                                   language="python", policy="base", created_at=now + i)
            store.record_suggestion(rec)
            store.record_outcome(rec.id, "rejected_typed", "return event", "idle", settled_at=now + i + 1)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("retrain-home")
    home.chmod(0o700)
    seed_edits(home)
    return home


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tiny_model_dir, home):  # noqa: F811
    c = await start_server(tiny_model_dir, home, {"trainerArgs": FAST, "autoRetrainEdits": 0})
    assert (await wait_ready(c))["state"] == "ready"
    yield c
    await stop_server(c)


async def wait_training(client, timeout=420.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await status(client)
        training = st.get("training") or {}
        if training.get("state") in ("done", "failed", "cancelled", "skipped"):
            return st
        await asyncio.sleep(0.5)
    raise TimeoutError("training did not finish")


async def retrain(client) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_RETRAIN, arguments=[])
    )


async def test_too_few_edits_is_said_plainly(tiny_model_dir, tmp_path):  # noqa: F811
    c = await start_server(tiny_model_dir, tmp_path / "empty-home", {"trainerArgs": FAST})
    try:
        await wait_ready(c)
        assert (await retrain(c))["started"] is True
        st = await wait_training(c)
        assert st["training"]["state"] == "skipped"  # nothing to do is not a failure
        assert "captured" in st["training"]["message"] or "edits" in st["training"]["message"]
        assert not [m for m in c.messages if m.type == types.MessageType.Error]
    finally:
        await stop_server(c)


async def test_cancel_leaves_the_model_as_it_was(client):
    before = (await status(client))["version"]["id"]
    assert (await retrain(client))["started"] is True
    await asyncio.sleep(3)  # the trainer is loading or training now
    cancelled = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_CANCEL_RETRAIN, arguments=[])
    )
    assert cancelled["cancelled"] is True
    st = await wait_training(client)
    assert st["training"]["state"] == "cancelled"
    await asyncio.sleep(6)  # the server looks for a new active version every 5 s
    assert (await status(client))["version"]["id"] == before


async def test_retrain_now_serves_the_new_version(client, home):
    assert (await retrain(client))["started"] is True
    assert (await retrain(client))["started"] is False  # one run at a time
    st = await wait_training(client)
    assert st["training"]["state"] == "done", st["training"]
    # Work-done progress reached the editor: begin, reports with the learner, end.
    values = [p.value if hasattr(p, "value") else p for reports in client.progress_reports.values() for p in reports]
    kinds = [v.kind if hasattr(v, "kind") else v.get("kind") for v in values]
    assert "begin" in kinds and "report" in kinds and "end" in kinds
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        version = (await status(client))["version"]
        if version["id"] != "base:model":
            break
        await asyncio.sleep(0.5)
    assert "sup" in version["policies"], version
    assert version["validation"]["sup"] is not None and version["validation_log_loss"]["sup"] is not None
    assert version["bandit"]["arms"]["sup"]["n"] == 0  # warm-started, no live episodes yet
    # The next suggestion comes from the new version and names its policy.
    uri = "file:///p/new.py"
    text = "def handler_99(event):\n    log(event)\n    "
    open_doc(client, uri, "python", text)
    result = await inline(client, uri, end_position(text))
    if result.items:
        sid = result.items[0].command.arguments[0]
        await asyncio.sleep(0.5)
        con = sqlite3.connect(f"file:{home / 'redline.db'}?mode=ro", uri=True)
        row = con.execute("SELECT model_version, policy FROM suggestions WHERE id = ?", (sid,)).fetchone()
        con.close()
        assert row[0] == version["id"] and row[1] in version["policies"]
