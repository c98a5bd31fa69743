#!/usr/bin/env bash
# Brings Redline up for real: sets everything up, then opens an editor with Redline active.
# Your VS Code (`code`) when it is installed; otherwise a local code-server on 127.0.0.1 (URL printed).
#
#   scripts/up.sh [WORKSPACE]     # default WORKSPACE: a sample folder under Redline's data folder
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"

workspace="${1:-}"
if [ -z "$workspace" ]; then
    workspace="$("$repo/.venv/bin/python" -c 'from server import paths; print(paths.data_home() / "workspace")')"
    mkdir -p "$workspace"
    [ -f "$workspace/notes.md" ] || printf '# Notes\n\nStart typing: Redline suggests what comes next in grey; Tab takes it.\n\n' > "$workspace/notes.md"
    [ -f "$workspace/example.py" ] || printf 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n' > "$workspace/example.py"
fi

if command -v code >/dev/null 2>&1 && [ -z "${REDLINE_USE_CODE_SERVER:-}" ]; then
    echo "[up] installing the extension into your VS Code"
    code --install-extension "$repo/extension/redline.vsix" --force
    echo "[up] opening $workspace"
    exec code "$workspace"
fi
bash "$repo/scripts/install-editor.sh"
exec bash "$repo/scripts/code-server.sh" "$workspace"
