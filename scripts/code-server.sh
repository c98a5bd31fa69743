#!/usr/bin/env bash
# Runs a real VS Code (code-server, in the browser) with the Redline extension, for trying it by hand.
#
#   scripts/code-server.sh [WORKSPACE]         # default WORKSPACE: the current folder
#   PORT=9000 scripts/code-server.sh ~/notes   # default PORT: 8765
#
# Then open the printed URL (on another machine: ssh -L PORT:127.0.0.1:PORT). It binds 127.0.0.1
# only and has no password. Its profile (HOME, settings, extensions) lives in .tools/code-server-user,
# apart from any VS Code of yours; the server runs with the repo's .venv/bin/python and keeps its data
# in $REDLINE_HOME (default: the platform's user data folder). Ctrl+C stops it.
#
# Needs scripts/install-editor.sh (run here when code-server is missing) and extension/redline.vsix
# (`cd extension && npm ci && npm run package`).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${REDLINE_TOOLS:-$repo/.tools}"
workspace="$(cd "${1:-.}" && pwd)"
port="${PORT:-8765}"
profile="$tools/code-server-user"
vsix="$repo/extension/redline.vsix"
python="$repo/.venv/bin/python"

say() { printf '[code-server] %s\n' "$*"; }

[ -x "$tools/bin/code-server" ] || bash "$repo/scripts/install-editor.sh"
[ -f "$vsix" ] || { say "missing $vsix: run 'cd extension && npm ci && npm run package'"; exit 1; }
[ -x "$python" ] || { say "missing $python: set up the project's virtual environment first"; exit 1; }

mkdir -p "$profile/home" "$profile/extensions"
export HOME="$profile/home"
export XDG_CONFIG_HOME="$HOME/.config" XDG_DATA_HOME="$HOME/.local/share" XDG_CACHE_HOME="$HOME/.cache"
# The server from this checkout, whether or not it is installed in the virtual environment.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

common=(--user-data-dir "$profile/user-data" --extensions-dir "$profile/extensions")
say "installing $vsix"
"$tools/bin/code-server" "${common[@]}" --force --install-extension "$vsix" >/dev/null

# redline.pythonPath is machine scoped: code-server reads such settings from its Machine settings, not
# the User ones. Point it at the repo's interpreter and keep every other setting there.
"$python" - "$profile/user-data" "$python" <<'EOF'
import json, sys
from pathlib import Path

data, python = Path(sys.argv[1]), sys.argv[2]
for scope, key, value in (("Machine", "redline.pythonPath", python), ("User", "workbench.startupEditor", "none")):
    path = data / scope / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        settings = json.loads(path.read_text() or "{}") if path.exists() else {}
    except ValueError:  # comments or trailing commas: a file edited by hand, left alone
        print(f"[code-server] {path} is not plain JSON; not setting {key} there", file=sys.stderr)
        continue
    if scope == "Machine" or key not in settings:
        settings[key] = value
    path.write_text(json.dumps(settings, indent=2) + "\n")
EOF

say "workspace $workspace"
say "open http://127.0.0.1:$port/?folder=$workspace"
exec "$tools/bin/code-server" "${common[@]}" \
    --auth none \
    --bind-addr "127.0.0.1:$port" \
    --disable-telemetry \
    --disable-update-check \
    --disable-workspace-trust \
    "$workspace"
