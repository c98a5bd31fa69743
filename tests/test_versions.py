"""Model versions: written whole or not at all, the gate, the active pointer, rollback, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from server import versions
from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def fake_adapter(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)


def make_version(root: Path, costs: dict[str, float], *, served: dict[str, bool] | None = None,
                 comparison: dict | None = None, capped: dict[str, float] | None = None,
                 nll: dict[str, float] | None = None) -> versions.Version:  # fmt: skip
    """A version whose validation gives `costs` per policy (base included), `capped` costs where given
    and the log-loss `nll` where given (by default equal to the cost, so both measures rank alike)."""
    served, capped, nll = served or {}, capped or {}, (dict(costs) if nll is None else nll)
    with versions.VersionWriter("/models/base", root) as w:
        for policy in costs:
            if policy != "base":
                fake_adapter(w.adapter_dir(policy))
        w.write_json(
            "validation.json",
            {
                p: {"cost": c, **({"nll": nll[p]} if p in nll else {}), "n": 5, "degenerate": False, "served": served.get(p, True), "reason": "",
                    **({"capped_cost": capped[p]} if p in capped else {})}
                for p, c in costs.items()
            },
        )
        if comparison is not None:
            w.write_json("comparison.json", comparison)
        v = w.commit()
    time.sleep(0.01)
    return v


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "versions"


def test_a_committed_version_is_complete_and_listed(root):
    v = make_version(root, {"base": 0.5, "sup": 0.3, "pref": 0.4})
    assert [x.id for x in versions.list_versions(root)] == [v.id]
    assert set(v.adapters) == {"sup", "pref"}
    assert (v.adapters["sup"] / "adapter_model.safetensors").is_file()
    assert v.manifest["complete"] and v.manifest["base_model"] == "/models/base"
    assert "adapters/sup/adapter_config.json" in v.manifest["files"]
    assert v.best() == ("sup", 0.3) and set(v.served) == {"base", "sup", "pref"}
    assert not any(p.name.startswith(versions.TMP_PREFIX) for p in root.iterdir())


def test_an_unfinished_or_damaged_version_is_never_listed(root):
    good = make_version(root, {"base": 0.5, "sup": 0.3})
    w = versions.VersionWriter("/models/base", root)  # never committed: a writer still at work
    fake_adapter(w.adapter_dir("sup"))
    assert w.path.name.startswith(versions.TMP_PREFIX)
    assert [x.id for x in versions.list_versions(root)] == [good.id]
    with pytest.raises(RuntimeError), versions.VersionWriter("/models/base", root) as w2:
        raise RuntimeError("a learner crashed")
    assert not w2.path.exists()
    # A file cut short after the fact (disk trouble): the manifest's sizes catch it.
    with open(good.adapters["sup"] / "adapter_model.safetensors", "r+b") as fh:
        fh.truncate(10)
    assert versions.list_versions(root) == []
    with pytest.raises(versions.VersionError, match="damaged"):
        versions.load_version(good.id, root)


def test_partial_folders_of_dead_writers_are_cleaned(root):
    root.mkdir(parents=True)
    dead = root / f"{versions.TMP_PREFIX}20260101-000000-abcd-999999999"
    dead.mkdir()
    mine = versions.VersionWriter("/m", root)  # a new writer clears what dead ones left
    assert not dead.exists() and mine.path.exists()
    assert versions.clean_partial(root) == []  # a live writer's folder stays


def test_the_first_version_activates_when_a_trained_policy_passed(root):
    assert versions.active(root) is None
    v = make_version(root, {"base": 0.5, "sup": 0.3})
    decision = versions.activate(v.id, root=root)
    assert decision.activated and "sup" in decision.reason
    assert versions.active(root).id == v.id


def test_the_gate_refuses_a_worse_version(root):
    good = make_version(root, {"base": 0.5, "sup": 0.2})
    assert versions.activate(good.id, root=root).activated
    worse = make_version(root, {"base": 0.5, "sup": 0.3, "pref": 0.35})
    decision = versions.activate(worse.id, root=root)
    assert not decision.activated and "worse" in decision.reason
    assert (decision.candidate_score, decision.active_score, decision.measure) == (0.3, 0.2, "log-loss")
    assert versions.active(root).id == good.id
    assert versions.activate(worse.id, root=root, tolerance=0.15).activated  # within tolerance


def test_the_gate_prefers_the_comparison_on_the_same_edits(root):
    good = make_version(root, {"base": 0.5, "sup": 0.2})
    versions.activate(good.id, root=root)
    # On its own (newer) validation edits the candidate looks worse than 0.2, but the active version,
    # scored on those same edits, does worse still: the candidate is better.
    candidate = make_version(root, {"base": 0.6, "sup": 0.3}, comparison={"against": good.id, "policy": "sup", "cost": 0.4})
    decision = versions.activate(candidate.id, root=root)
    assert decision.activated and "new validation edits" in decision.reason and decision.active_score == 0.4
    assert versions.active(root).id == candidate.id


def test_the_gate_compares_capped_costs(root):
    """A few long suggestions against short fixes make the uncapped mean; the gate compares each edit's
    cost capped at 1, as the bandit counts them: here PREF is better on most edits, SUP on the mean."""
    good = make_version(root, {"base": 5.0, "sup": 2.0}, capped={"base": 0.9, "sup": 0.8}, nll={})
    versions.activate(good.id, root=root)
    candidate = make_version(root, {"base": 6.0, "sup": 3.0, "pref": 4.0}, capped={"base": 0.9, "sup": 0.8, "pref": 0.6},
                             comparison={"against": good.id, "policy": "sup", "cost": 2.5, "capped_cost": 0.7}, nll={})  # fmt: skip
    assert candidate.best() == ("pref", 0.6)
    decision = versions.activate(candidate.id, root=root)
    assert decision.activated and (decision.candidate_score, decision.active_score, decision.measure) == (0.6, 0.7, "cost")
    # A version that recorded only the uncapped mean is compared on that.
    assert versions.gate_cost({"cost": 2.0}) == 2.0 and versions.gate_cost({"cost": 2.0, "capped_cost": None}) == 2.0


def test_versions_rank_and_gate_on_the_log_loss_of_the_edits(root):
    """y′ is an edit of the answer the user was shown, so validation cost favours whoever wrote that
    answer (training.evaluate.judge); the log-loss of y′ decides, the cost only breaks ties."""
    v = make_version(root, {"base": 0.2, "sup": 0.5, "pref": 0.3, "cost": 0.55},
                     nll={"base": 1.0, "sup": 0.6, "pref": 0.9, "cost": 0.6})  # fmt: skip
    assert v.best() == ("sup", 0.6) and v.best(versions.COST) == ("pref", 0.3)
    assert versions.activate(v.id, root=root).activated
    # Dearer answers on the new edits than the active version's, but a likelier y′: it replaces it.
    better = make_version(root, {"base": 0.2, "sup": 0.6}, nll={"base": 1.0, "sup": 0.5},
                          comparison={"against": v.id, "policy": "sup", "cost": 0.3, "nll": 0.55})  # fmt: skip
    decision = versions.activate(better.id, root=root)
    assert decision.activated and decision.measure == "log-loss" and (decision.candidate_score, decision.active_score) == (0.5, 0.55)
    worse = make_version(root, {"base": 0.2, "sup": 0.1}, nll={"base": 1.0, "sup": 0.7},
                         comparison={"against": better.id, "policy": "sup", "cost": 0.4, "nll": 0.6})  # fmt: skip
    decision = versions.activate(worse.id, root=root)
    assert not decision.activated and "0.700 is worse than" in decision.reason and "log-loss" in decision.reason
    # A side without a log-loss (a version from before it was recorded): both are compared on cost.
    old = make_version(root, {"base": 0.2, "sup": 0.1}, nll={"base": 1.0, "sup": 0.7},
                       comparison={"against": better.id, "policy": "sup", "cost": 0.4})  # fmt: skip
    decision = versions.activate(old.id, root=root)
    assert decision.activated and decision.measure == "cost" and (decision.candidate_score, decision.active_score) == (0.1, 0.4)


def test_a_version_without_a_served_trained_policy_is_refused_unless_forced(root):
    v = make_version(root, {"base": 0.3, "sup": 0.5}, served={"sup": False})
    decision = versions.activate(v.id, root=root)
    assert not decision.activated and "no trained policy" in decision.reason
    assert versions.active(root) is None
    assert versions.activate(v.id, root=root, force=True).activated
    assert versions.active(root).id == v.id


def test_rollback_walks_the_history_back_to_the_base_model(root):
    a = make_version(root, {"base": 0.5, "sup": 0.4})
    b = make_version(root, {"base": 0.5, "sup": 0.3})
    c = make_version(root, {"base": 0.5, "sup": 0.2})
    for v in (a, b, c):
        assert versions.activate(v.id, root=root).activated
    assert versions.read_pointer(root)["history"] == [a.id, b.id]
    versions.delete_version(b.id, root=root)  # a version that has gone is skipped
    assert versions.rollback(root).id == a.id
    assert versions.active(root).id == a.id
    assert versions.rollback(root) is None and versions.active(root) is None
    with pytest.raises(versions.VersionError):
        versions.delete_version("../x", root=root)


def test_prune_keeps_the_newest_and_the_active_version(root):
    made = [make_version(root, {"base": 0.5, "sup": 0.4 - i / 100}) for i in range(5)]
    versions.activate(made[0].id, root=root)
    assert versions.prune(keep=2, root=root) == [made[1].id, made[2].id]
    assert [v.id for v in versions.list_versions(root)] == [made[0].id, made[3].id, made[4].id]
    assert versions.active(root).id == made[0].id


def test_a_pointer_to_a_missing_version_reads_as_the_base_model(root):
    v = make_version(root, {"base": 0.5, "sup": 0.4})
    versions.activate(v.id, root=root)
    import shutil

    shutil.rmtree(v.path)
    assert versions.active(root) is None


def test_reading_versions_imports_no_training_library():
    code = (
        "import sys, server.versions as v; v.list_versions; "
        "bad = [m for m in ('torch', 'trl', 'peft', 'transformers', 'training') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- crash safety: the trainer killed with SIGKILL ----------------------------------------------------

# Runs the real trainer on the tiny model, but stops itself (SIGSTOP) at a chosen point so that the test
# can kill it there with SIGKILL: deterministic, unlike a kill after a guessed delay.
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from server import versions
    from training import cli

    where = os.environ["STOP_AT"]
    if where == "before_manifest":
        # Inside commit(): every adapter written, the manifest (the completion marker) not yet.
        original = versions.VersionWriter.commit
        def commit(self, **kw):
            os.kill(os.getpid(), signal.SIGSTOP)
            return original(self, **kw)
        versions.VersionWriter.commit = commit
    elif where == "before_rename":
        original_rename = os.rename
        def rename(src, dst):
            if versions.TMP_PREFIX in str(src):
                os.kill(os.getpid(), signal.SIGSTOP)
            return original_rename(src, dst)
        os.rename = rename
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def _edits_db(path: Path, n: int = 16) -> None:
    from server.store import Store, SuggestionRecord

    with Store(path) as store:
        for i in range(n):
            prompt = f"def handler_{i}(event):\n    "
            rec = SuggestionRecord(uri=f"file:///p/h{i}.py", suggestion="return None", prompt=prompt,
                                   prefix=prompt, language="python", created_at=1000.0 + i)  # fmt: skip
            store.record_suggestion(rec)
            store.record_outcome(rec.id, "edited", "return None  # ok", "idle", settled_at=2000.0 + i)


@pytest.mark.parametrize("stop_at", ["training", "before_manifest", "before_rename"])
def test_killing_the_trainer_leaves_the_active_version_untouched(stop_at, tmp_path, tiny_model_dir):  # noqa: F811
    home = tmp_path / "home"
    root = home / "models" / "versions"
    active_before = make_version(root, {"base": 0.9, "sup": 0.1})
    assert versions.activate(active_before.id, root=root).activated
    pointer_before = (root / versions.POINTER).read_bytes()
    _edits_db(home / "redline.db")
    env = {**os.environ, "REDLINE_HOME": str(home), "STOP_AT": stop_at, "PYTHONPATH": str(ROOT)}
    args = [
        "train", "--model", str(tiny_model_dir), "--learners", "sup", "--progress", "json", "--force",
        "--set", "sup.max_steps=40", "--set", "sup.batch_size=2", "--set", "sup.r=4",
        "--set", "eval.max_new_tokens=4",
    ]  # fmt: skip
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not _reached(stop_at, proc.pid, log):
            assert proc.poll() is None, f"the trainer ended before the point: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the trainer never reached the point"
            time.sleep(0.1)
        if stop_at != "training":
            partial = [p for p in root.iterdir() if p.name.startswith(versions.TMP_PREFIX)]
            assert partial and any(partial[0].rglob("adapter_model.safetensors"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (root / versions.POINTER).read_bytes() == pointer_before
    assert versions.active(root).id == active_before.id
    assert [v.id for v in versions.list_versions(root)] == [active_before.id]
    # The next run's writer removes what the killed one left behind.
    versions.clean_partial(root)
    assert not [p for p in root.iterdir() if p.name.startswith(versions.TMP_PREFIX)]


def _reached(stop_at: str, pid: int, log: Path) -> bool:
    if stop_at == "training":  # in the middle of SUP's optimizer steps
        events = [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]
        return any(e.get("learner") == "sup" and e.get("stage") == "train" and e.get("step") == 3 for e in events)
    with open(f"/proc/{pid}/stat") as fh:  # stopped by itself (state T)
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def test_the_version_list_shows_what_policies_are_ranked_by(tmp_path, monkeypatch, capsys):
    from server import cli

    monkeypatch.setenv("REDLINE_HOME", str(tmp_path / "home"))
    v = make_version(versions.versions_root(), {"base": 0.2, "sup": 0.5}, nll={"base": 1.0, "sup": 0.6})
    versions.activate(v.id)
    assert cli.cmd_model_list(None) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"* {v.id}") and "validation log-loss/cost: base 1.000/0.200, sup 0.600/0.500" in line
