"""The `redline` command line on a real database."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from server.store.records import SuggestionRecord
from server.store.store import Store


def redline(*args, env_home, input_text=None):
    env = dict(os.environ, REDLINE_HOME=str(env_home))
    return subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, env=env,
        timeout=120, input=input_text,
    )


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    store = Store(home / "redline.db")
    now = time.time()
    for i, (lang, y, y2, uri) in enumerate(
        [
            ("python", "return a + b", "return a + b", "file:///p/one/a.py"),
            ("python", "print(x)", "print(x, end='')", "file:///p/one/b.py"),
            ("markdown", "the plan works.", "the plan worked well.", "file:///p/two/c.md"),
        ]
    ):
        rec = SuggestionRecord(
            uri=uri, suggestion=y, prompt=f"prompt {i}", language=lang, policy="base",
            model_version="base:test", created_at=now - (2 - i) * 86400,
        )
        store.record_suggestion(rec)
        store.mark_accepted(rec.id, y, "command", now)
        store.record_outcome(rec.id, "accepted" if y == y2 else "edited", y2, "saved", now)
    store.close()
    return home


def test_help_on_every_subcommand(tmp_path):
    for args in (["--help"], ["serve", "--help"], ["stats", "--help"], ["export", "--help"],
                 ["forget", "--help"], ["model", "prepare", "--help"], ["model", "info", "--help"]):
        result = redline(*args, env_home=tmp_path)
        assert result.returncode == 0 and "usage: redline" in result.stdout, args


def test_stats(home):
    out = json.loads(redline("stats", "--json", env_home=home).stdout)
    assert out["total"]["suggestions"] == 3
    assert out["by_language"]["python"]["suggestions"] == 2
    assert out["total"]["mean_cost"] > 0
    text = redline("stats", env_home=home).stdout
    assert "python" in text and "markdown" in text


def test_export_formats_trl_reads(home, tmp_path):
    sft = tmp_path / "sft.jsonl"
    assert redline("export", str(sft), env_home=home).returncode == 0
    rows = [json.loads(line) for line in sft.read_text().splitlines()]
    assert len(rows) == 3 and {"prompt", "completion", "cost"} <= set(rows[0])
    assert stat.S_IMODE(os.stat(sft).st_mode) == 0o600
    pref = tmp_path / "pref.jsonl"
    redline("export", str(pref), "--format", "preference", env_home=home)
    rows = [json.loads(line) for line in pref.read_text().splitlines()]
    assert len(rows) == 2  # the unchanged acceptance carries no preference
    assert all(r["chosen"] != r["rejected"] for r in rows)


def test_forget_needs_confirmation_then_deletes(home):
    refused = redline("forget", "--all", env_home=home, input_text="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert json.loads(redline("stats", "--json", env_home=home).stdout)["total"]["suggestions"] == 3
    done = redline("forget", "--folder", "/p/one", "--yes", env_home=home)
    assert done.returncode == 0 and "forgot 2" in done.stdout
    assert json.loads(redline("stats", "--json", env_home=home).stdout)["total"]["suggestions"] == 1
    assert redline("forget", "--since", "not-a-date", "--yes", env_home=home).returncode != 0


def test_forget_deletes_model_versions_trained_on_forgotten_edits(home):
    from server import versions

    store = Store(home / "redline.db")
    ids = [r["id"] for r in store.db.query("SELECT id, uri FROM suggestions ORDER BY uri")]
    store.close()
    root = home / "models" / "versions"
    made = []
    for train in ([ids[0]], [ids[2]]):  # /p/one/a.py, then /p/two/c.md
        with versions.VersionWriter(base_model="/m", root=root) as w:
            w.write_json("edits.json", {"train": train, "validation": []})
            w.write_json("validation.json", {"base": {"cost": 0.5, "served": True}})
            made.append(w.commit().id)
        versions.activate(made[-1], force=True, root=root)
    assert versions.read_pointer(root)["version"] == made[1]
    out = redline("forget", "--folder", "/p/two", "--yes", env_home=home)
    assert out.returncode == 0 and made[1] in out.stdout
    assert [v.id for v in versions.list_versions(root)] == [made[0]]
    assert versions.read_pointer(root)["version"] == made[0]  # back to the one that never saw them
