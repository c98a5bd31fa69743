"""Shared fixtures. Tests never touch the user's data: REDLINE_HOME points into a test folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The default model is converted once per machine into this folder (gitignored) and reused by
# every test run; each server under test still gets its own empty REDLINE_HOME for its data.
TEST_MODELS_HOME = ROOT / ".redline-dev" / "test-home"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("REDLINE_HOME", str(tmp_path / "redline-home"))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded default model, converted to a safetensors folder (once per machine)."""
    from server import model_store

    old = os.environ.get("REDLINE_HOME")
    os.environ["REDLINE_HOME"] = str(TEST_MODELS_HOME)
    try:
        return model_store.prepare_default_model(progress=lambda msg: print(msg, file=sys.stderr))
    finally:
        if old is None:
            os.environ.pop("REDLINE_HOME", None)
        else:
            os.environ["REDLINE_HOME"] = old
