"""The trainer assumes no CPU and no single process: `accelerate launch` runs it unchanged.

Two processes on the CPU (gloo, the same data-parallel path a machine with GPUs takes): both train,
only the main one validates, writes and activates the version, and exactly one version appears.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server import versions
from tests.test_retrain_lsp import seed_edits
from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_through_accelerate_write_one_version(tiny_model_dir, tmp_path):  # noqa: F811
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        launcher = shutil.which("accelerate")
    assert launcher, "accelerate's launcher is installed with the project"
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    seed_edits(home)
    cmd = [str(launcher), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "training", "train",
           "--data-home", str(home), "--model", str(tiny_model_dir), "--progress", "none", "--learners", "sup,early",
           "--set", "sup.max_steps=4", "--set", "sup.learning_rate=0.01", "--set", "sup.min_edits=4",
           "--set", "sup.batch_size=2", "--set", "eval.max_new_tokens=8",
           # Early probes two λ on a third of the 12 training edits, and only the winner goes on
           "--set", "early.max_steps=3", "--set", "early.batch_size=1", "--set", "early.min_edits=4",
           "--set", "early.lambdas=0.5,1.0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_CONFIG_FILE": "/dev/null"}
    env.pop("REDLINE_HOME", None)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{"type": "result"')]
    written = [s for s in summaries if s.get("version")]
    assert len(written) == 1, summaries  # the main process writes; the other only trained
    root = home / "models" / "versions"
    assert [v.id for v in versions.list_versions(root)] == [written[0]["version"]]
    v = versions.load_version(written[0]["version"], root)
    assert "sup" in v.adapters and v.validation["sup"]["n"] == 4
    config = v.read_json("train_config.json")
    assert config["runs"]["sup"]["steps"] == 4
    early = config["runs"]["early"]
    assert "early" in v.adapters and early["metrics"]["probe_edits"] == 4 and len(early["metrics"]["grid"]) == 2
    assert early["steps"] == 3  # the winner's probe step and the two after it


@pytest.mark.parametrize("flag", ["--incremental"])
def test_incremental_needs_a_warm_start(flag, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--data-home", str(tmp_path), flag],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "--warm-start" in proc.stderr


def test_a_negative_thread_count_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--data-home", str(tmp_path), "--threads", "-1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "--threads" in proc.stderr
