"""Model folders: a broken one gives an error that says what to do; a half-written cache is never used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from server import model_store
from server.model_store import ModelFolderError, validate_model_folder


@pytest.fixture
def copy_of_default(default_model_dir, tmp_path):
    """A copy whose weights are a hard link (no 540 MB copy): tests damage only the copy's files."""
    dst = tmp_path / "model"
    dst.mkdir()
    for f in default_model_dir.iterdir():
        if f.suffix == ".safetensors":
            (dst / f.name).hardlink_to(f)
        else:
            shutil.copy(f, dst / f.name)
    return dst


def test_default_model_folder_is_valid(default_model_dir):
    info = validate_model_folder(default_model_dir)
    assert info.model_type == "llama"
    assert info.weights_bytes > 100_000_000
    assert info.fim is False  # SmolLM2 has no fill-in-the-middle tokens
    assert (default_model_dir / model_store.MANIFEST).is_file()


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "config.json").unlink(), "incomplete or damaged"),
        # A folder of the user's own has no manifest: each file is checked for itself.
        (lambda d: [(d / model_store.MANIFEST).unlink(), (d / "config.json").unlink()], "no config.json"),
        (lambda d: [(d / model_store.MANIFEST).unlink(), (d / "config.json").write_text("{")], "not valid JSON"),
        (lambda d: (d / "tokenizer.json").unlink(), "incomplete or damaged"),
        (lambda d: (d / model_store.MANIFEST).write_text("garbage"), "damaged redline-model.json"),
    ],
)
def test_broken_folder_says_how_to_fix_it(copy_of_default, damage, message):
    damage(copy_of_default)
    with pytest.raises(ModelFolderError, match=message) as err:
        validate_model_folder(copy_of_default)
    text = str(err.value)
    assert any(hint in text for hint in ("Delete the folder", "Point `redline.modelPath`")), text


def test_truncated_weights_without_manifest(copy_of_default, tmp_path):
    (copy_of_default / model_store.MANIFEST).unlink()
    weights = copy_of_default / "model.safetensors"
    data = weights.read_bytes()[:1_000_000]
    weights.unlink()  # break the hard link before writing
    weights.write_bytes(data)
    with pytest.raises(ModelFolderError, match="truncated or damaged"):
        validate_model_folder(copy_of_default)


def test_foreign_file_is_not_a_model(tmp_path):
    blob = tmp_path / "not-a-model"
    blob.write_bytes(b"\x00\x01binary")
    with pytest.raises(ModelFolderError, match="is a file, not a folder"):
        validate_model_folder(blob)


def test_half_written_cache_is_replaced_not_used(default_model_dir, tmp_path, monkeypatch):
    """A cache whose weights were cut short (a crash mid-conversion) is set aside and rebuilt."""
    monkeypatch.setenv("REDLINE_HOME", str(tmp_path / "home"))
    target = model_store.default_model_dir()
    target.mkdir(parents=True)
    for f in default_model_dir.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, target / f.name)
    (target / "model.safetensors").write_bytes(b"\x00" * 1000)  # the manifest says otherwise
    messages = []
    folder = model_store.prepare_default_model(progress=messages.append)
    assert folder == target
    validate_model_folder(folder)
    assert any("Moving it aside" in m for m in messages)
    assert list(target.parent.glob(f"{target.name}.damaged-*"))


def test_cli_reports_a_broken_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    result = subprocess.run(
        [sys.executable, "-m", "server", "model", "info", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "has no weights" in result.stderr
