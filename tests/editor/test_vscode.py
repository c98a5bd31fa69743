"""End to end in a real VS Code: code-server in headless Chromium, with the packaged extension.

It types at the end of a Python file and a Markdown file, waits for Redline's ghost text, accepts it
with Tab and saves; then runs "Redline: Show statistics" from the command palette and reads the
document it opens. It checks the files on disk, the acceptances in the server's database, and that the
statistics (from `redline stats --json`, run by the extension) count an accepted suggestion.

Needs `scripts/install-editor.sh` (.tools/) and `npm ci && npm run package` in extension/ first.
Without them the test is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.editor, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("REDLINE_TOOLS", REPO / ".tools"))
VSIX = REPO / "extension" / "redline.vsix"
CODE_SERVER = TOOLS / "bin" / "code-server"
NODE = TOOLS / "bin" / "node24"
DRIVER = Path(__file__).with_name("drive.mjs")

# name, content before, what the user types at its end, seconds to wait for the ghost text. The first
# file waits longest: the server loads its model on first use. No brackets or quotes in the typed
# text, which the editor would auto-close.
FILES = [
    (
        "area.py",
        'import math\n\n\ndef circle_area(radius):\n    """Return the area of a circle."""\n',
        "    return math.",
        120,
    ),
    ("notes.md", "# Notes\n\nA pangram:\n\n", "The quick brown fox jumps over the", 60),
]

# Only what keeps the run deterministic: no suggest widget competing with the ghost text for Tab, no
# start page, tips or update checks.
EDITOR_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "extensions.ignoreRecommendations": True,
    "security.workspace.trust.enabled": False,
    "editor.inlineSuggest.enabled": True,
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.autoClosingBrackets": "never",
    "editor.autoClosingQuotes": "never",
    "files.autoSave": "off",
}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _require(path: Path, hint: str) -> None:
    if path.exists():
        return
    reason = f"{path} is missing: {hint}"
    if _ci():
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"code-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"code-server did not answer {url} within {timeout} s")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as err:
        return f"({err})"


def _without_progress_bars(text: str) -> str:
    """Drop the progress-bar lines (model conversion) that would crowd out the useful ones."""
    return "\n".join(line for line in text.splitlines() if "%|" not in line and line.strip()[-7:] != "[error]")


class CodeServer:
    """code-server on a free localhost port, with its own HOME, profile and extensions folder."""

    def __init__(self, root: Path, workspace: Path, redline_home: Path) -> None:
        self.root = root
        self.workspace = workspace
        self.redline_home = redline_home
        self.home = root / "home"
        self.user_data = root / "user-data"
        self.extensions = root / "extensions"
        self.log = root / "code-server.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("VSCODE_", "ELECTRON_")):
                del env[key]
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            REDLINE_HOME=str(self.redline_home),
            # The server from this checkout, whether or not it is installed in the interpreter.
            PYTHONPATH=os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p),
        )
        return env

    def start(self) -> None:
        self.home.mkdir()
        # Editor settings are the user's; redline.pythonPath is machine scoped, and code-server, a
        # remote of sorts, reads those only from its Machine settings.
        for scope, settings in (("User", EDITOR_SETTINGS), ("Machine", {"redline.pythonPath": sys.executable})):
            (self.user_data / scope).mkdir(parents=True)
            (self.user_data / scope / "settings.json").write_text(json.dumps(settings, indent=2))
        common = ["--user-data-dir", str(self.user_data), "--extensions-dir", str(self.extensions)]
        subprocess.run(
            [str(CODE_SERVER), *common, "--install-extension", str(VSIX)],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )
        with self.log.open("wb") as log:
            # A session of its own: stopping it means stopping its whole process group, or its file
            # watcher outlives it.
            self.proc = subprocess.Popen(
                [
                    str(CODE_SERVER),
                    *common,
                    "--auth", "none",
                    "--bind-addr", f"127.0.0.1:{self.port}",
                    "--disable-telemetry",
                    "--disable-update-check",
                    "--disable-workspace-trust",
                    str(self.workspace),
                ],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait_http(f"{self.url}/healthz", self.proc, timeout=60)

    def stop(self) -> None:
        if self.proc is None:
            return
        group = self.proc.pid  # the session leader's pid is the group's id
        try:
            os.killpg(group, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)
        try:  # whatever outlived the leader: the server, the file watcher
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)
        self.proc = None

    def redline_log(self) -> str:
        """The extension's "Redline" output channel, server stderr included, as code-server wrote it."""
        logs = sorted(self.user_data.glob("logs/**/*Redline*.log"))
        return "\n".join(f"--- {p}\n{_without_progress_bars(_tail(p, 20000))[-4000:]}" for p in logs) or (
            "(no Redline output log)"
        )


@pytest.fixture
def editor(tmp_path: Path):
    _require(VSIX, "run `npm ci && npm run package` in extension/")
    _require(CODE_SERVER, "run scripts/install-editor.sh")
    _require(NODE, "run scripts/install-editor.sh")
    _require(TOOLS / "playwright" / "node_modules" / "playwright-core", "run scripts/install-editor.sh")
    _require(Path("/usr/bin/chromium"), "run scripts/install-editor.sh")

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for name, before, _typed, _timeout in FILES:
        (workspace / name).write_text(before)
    server = CodeServer(tmp_path / "code-server", workspace, tmp_path / "redline-home")
    server.root.mkdir()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _accepted_uris(db: Path) -> list[str]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return [row[0] for row in con.execute("SELECT uri FROM suggestions WHERE accepted_at IS NOT NULL")]
    except sqlite3.OperationalError:  # the server has not created its tables yet
        return []
    finally:
        con.close()


def test_ghost_text_accepted_and_recorded(editor: CodeServer, tmp_path: Path) -> None:
    spec = {
        "url": editor.url,
        "workspace": str(editor.workspace),
        "tools": str(TOOLS),
        "profileDir": str(tmp_path / "chromium-profile"),
        "screenshotDir": str(tmp_path),
        "files": [{"name": n, "typed": t, "timeoutMs": s * 1000} for n, _b, t, s in FILES],
        "saveTimeoutMs": 15_000,
        "statistics": {"timeoutMs": 60_000},
    }
    home = tmp_path / "driver-home"
    home.mkdir()
    started = time.monotonic()
    # Its own session too, so that a timeout takes Chromium down with the driver.
    driver = subprocess.Popen(
        [str(NODE), str(DRIVER), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Chromium keeps bits of state in HOME (.pki, .local): a temporary one.
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VSCODE_")}, "HOME": str(home)},
    )
    try:
        stdout, stderr = driver.communicate(timeout=390)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        stdout, stderr = driver.communicate()
    lines = stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {"ok": False, "error": "the driver printed no report"}
    context = (
        f"driver exit {driver.returncode} after {time.monotonic() - started:.0f} s\n"
        f"driver log:\n{stderr[-4000:]}\n"
        f"screenshot: {report.get('screenshot')}\n"
        f"Redline output:\n{editor.redline_log()}\n"
        f"code-server log:\n{_tail(editor.log, 2000)}"
    )
    assert report.get("ok"), f"{report.get('error')}\n{context}"
    for seen in report["files"]:  # shown with -s, and in the report of a later failure
        print(f"{seen['name']}: ghost text after {seen['ghostMs']} ms: {seen['ghost']!r}")
    print(f"status bar: {report.get('statusText')!r} ({report.get('status')})")
    stats = report.get("statistics") or {}
    print(f"statistics: {stats.get('accepted')} accepted of {stats.get('shown')} shown")
    assert (stats.get("accepted") or 0) >= 1, f"statistics: {stats.get('text', '')[:1000]!r}\n{context}"

    for name, before, typed, _timeout in FILES:
        on_disk = (editor.workspace / name).read_text()
        assert on_disk.startswith(before + typed), f"{name} on disk: {on_disk!r}\n{context}"
        assert len(on_disk) > len(before + typed), f"{name}: no suggestion was inserted\n{context}"

    # The accept command travels asynchronously (Tab -> workspace/executeCommand -> database).
    db = editor.redline_home / "redline.db"
    deadline = time.monotonic() + 20
    missing = [name for name, *_ in FILES]
    while missing and time.monotonic() < deadline:
        uris = _accepted_uris(db)
        missing = [name for name, *_ in FILES if not any(uri.endswith("/" + name) for uri in uris)]
        if missing:
            time.sleep(0.5)
    assert not missing, f"no accepted suggestion recorded for {missing} in {db}\n{context}"
