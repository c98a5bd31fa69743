#!/usr/bin/env bash
# Runs every test: sets up what a fresh machine lacks (Python environment, default model, extension,
# a real VS Code in Chromium for the editor test), then pytest. Extra arguments go to pytest.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
bash scripts/install-editor.sh
exec .venv/bin/python -m pytest "$@"
