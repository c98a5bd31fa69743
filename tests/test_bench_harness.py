"""`redline bench`: Max SubOpt and the table on hand-made runs, what the model reads and what the user
sees, and the whole quick bench on the tiny model (offline log → pipeline → online rounds → report)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)
from training.bench import report
from training.bench.harness import (
    CODE_INDENT,
    LABELS,
    METHODS,
    BenchConfig,
    function_end,
    outcome_kind,
    resolve_settings,
    task_for,
)

ROOT = Path(__file__).resolve().parents[1]


# --- Max SubOpt and the table ----------------------------------------------------------------------


def test_max_subopt_on_a_hand_made_example():
    means = {
        "A": {"base": 0.50, "sup": 0.20, "pref": 0.40, "late": 0.25},
        "B": {"base": 0.30, "sup": 0.60, "pref": 0.35, "late": 0.32},
        "C": {"base": 0.10, "sup": 0.15, "pref": 0.90},  # Late did not run here
    }
    got = report.max_subopt(means)
    # Best per setting: A 0.20 (SUP), B 0.30 (base), C 0.10 (base).
    assert got["base"]["value"] == pytest.approx(0.30) and got["base"]["setting"] == "A"
    assert got["sup"]["value"] == pytest.approx(0.30) and got["sup"]["setting"] == "B"
    assert got["pref"]["value"] == pytest.approx(0.80) and got["pref"]["setting"] == "C"
    assert got["late"]["value"] == pytest.approx(0.05) and got["late"]["setting"] == "A"
    assert got["late"]["settings"] == 2 and not got["late"]["complete"] and got["sup"]["complete"]


def _run(setting: str, seed: int, costs: dict[str, list[float]], passed=None, switch=None) -> dict:
    return {"setting": setting, "seed": seed, "timings": {"offline_s": 1.0, "train_s": 2.0, "online_s": 3.0},
            "offline": {"edits": 4, "mean_cost": 0.5}, "train": {},
            "online": {"rounds": len(next(iter(costs.values()))), "costs": costs, "passed": passed,
                       "switch_after": switch, "late_arms": ["sup"] * 2}}  # fmt: skip


def test_table_means_over_rounds_and_seeds_with_a_cap():
    runs = [
        _run("w", 0, {"base": [0.4, 0.6], "sup": [0.1, 0.3], "late": [3.0, 0.2]}),  # Late's 3.0 counts as 1
        _run("w", 1, {"base": [0.6, 0.8], "sup": [0.3, 0.5], "late": [0.4, 0.2]}),
        _run("c", 0, {"base": [0.2, 0.2], "sup": [0.9, 0.9], "late": [0.2, 0.4]}, passed={"base": [True, False]}),
    ]
    table = report.method_means(runs)
    assert table["w"]["base"][0] == pytest.approx(0.6) and table["w"]["base"][1] == pytest.approx(0.1414, abs=1e-3)
    assert table["w"]["late"][0] == pytest.approx((0.6 + 0.3) / 2)
    assert table["c"]["sup"][1] is None  # one seed: no spread
    assert report.method_means(runs, cap=None)["w"]["late"][0] == pytest.approx((1.6 + 0.3) / 2)

    lines, subopt = report.cost_table(runs)
    assert lines[0] == "| Method | w | c | Max SubOpt |"
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert set(rows) == {"Base", "SUP", "Late"}
    assert "**0.300 ± 0.141**" in rows["SUP"]  # the best of w, in bold
    # SUP: 0.3 in w (best), 0.9 against base's 0.2 in c -> 0.7.
    assert subopt["sup"]["value"] == pytest.approx(0.7) and rows["SUP"].endswith("| 0.700 |")
    assert report.pass_rates(runs) == {"c": {"base": (0.5, None, 1)}}


def test_validation_agreement_counts_pairs_in_the_online_order_and_the_first_picks_regret():
    run = _run("w", 0, {"base": [0.5], "sup": [0.1], "pref": [0.3], "mixture": [0.0]})
    run["train"] = {"validation": {  # cost ranks the base model first (backwards), log-loss gets it right
        "base": {"capped_cost": 0.2, "nll": 0.5}, "sup": {"capped_cost": 0.6, "nll": 0.3},
        "pref": {"capped_cost": 0.4, "nll": 0.4}, "mixture": {"capped_cost": 0.0, "nll": 0.0}}}  # fmt: skip
    tied = _run("w", 1, {"base": [0.5], "sup": [0.5]})  # tied online: no pair; the pick loses nothing
    tied["train"] = {"validation": {"base": {"capped_cost": 0.1, "nll": 0.2}, "sup": {"capped_cost": 0.3, "nll": 0.1}}}
    got = report.validation_agreement([run, tied])
    assert got["cost"]["agree"] == 0.0 and got["cost"]["pairs"] == 3
    assert got["cost"]["regret"] == pytest.approx((0.5 - 0.1 + 0.0) / 2) and got["cost"]["runs"] == 2
    assert got["log-loss"]["agree"] == 1.0 and got["log-loss"]["regret"] == 0.0
    committed = json.loads((Path(__file__).resolve().parents[1] / "docs/bench/results.json").read_text())
    assert "| log-loss | 77% of 141 | 0.009 (15 runs) |" in report.render(committed, [], Path("."))


def test_drift_splits_rounds_at_the_switch():
    runs = [_run("d", 0, {"base": [0.0, 0.2, 1.0, 0.8]}, switch=2)]
    assert report.drift_split(runs) == {"d": {"base": (pytest.approx(0.1), pytest.approx(0.9))}}


def test_the_report_checks_each_target_and_can_say_no():
    runs = [
        _run("ws", 0, {"base": [0.8, 0.8], "sup": [0.2, 0.2], "pref": [0.9, 0.9], "cost": [0.5, 0.5],
                       "early": [0.3, 0.3], "mixture": [0.25, 0.25], "late": [0.2, 0.2]}),
        _run("cs", 0, {"base": [0.5, 0.5], "sup": [0.6, 0.6], "pref": [0.4, 0.4], "cost": [0.6, 0.6],
                       "early": [0.45, 0.45], "mixture": [0.5, 0.5], "late": [0.42, 0.42]},
             passed={"base": [True, False], "sup": [False, False], "late": [True, True]}),
    ]  # fmt: skip
    settings = [{"name": "ws", "user": "writing-summary-strong"}, {"name": "cs", "user": "code-style-strong"}]
    checks = {t: (ok, why) for t, ok, why in report.targets(runs, settings)}
    every, best, ens, strong, code = list(checks)
    assert checks[every][0] is True and "PREF: cs" in checks[every][1]  # PREF only helps in cs
    assert checks[best][0] is True  # SUP/Late best in ws, PREF in cs
    # Late's worst gap: 0.02 in cs; PREF's 0.7 in ws; Late is the lowest of all, and an ensemble.
    assert checks[ens][0] is True and checks[ens][1].startswith("Late 0.020")
    assert checks[strong][0] is True and "25%" in checks[strong][1]  # 0.2 / 0.8
    assert checks[code][0] is False and "SUP 0.00" in checks[code][1]  # SUP's pass@1 fell below Base's
    # No learner may hide: COST never beats Base in the second set of runs.
    runs[0]["online"]["costs"]["cost"] = [0.9, 0.9]
    runs[1]["online"]["costs"]["cost"] = [0.7, 0.7]
    checks = {t: ok for t, ok, _ in report.targets(runs, settings)}
    assert checks[every] is False


# --- what the model reads -----------------------------------------------------------------------------


def test_code_task_reads_the_prompt_and_the_body_indent(tiny_model_dir):  # noqa: F811
    from transformers import AutoTokenizer

    from training.bench.contexts import load_contexts

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = BenchConfig(quick=True)
    ctx = load_contexts("humaneval", "train", 1, 0)[0]
    task = task_for(ctx, tok, cfg)
    assert task.prompt == ctx["prompt"] + CODE_INDENT and task.language == "python"
    y = "return 1\n\nprint(x)"
    cut = task.stop(y)
    assert y[:cut] == "return 1\n" and function_end("x = 1\n    return x") is None
    assert task.shown("return 1") == "    return 1"
    assert task.completion("    return 2\n") == "return 2\n"  # x + y′ is the settled program

    writing = load_contexts("summary", "train", 1, 0)[0]
    wt = task_for(writing, tok, cfg)
    assert wt.prompt.startswith("<|im_start|>") and wt.prompt.endswith("<|im_start|>assistant\n")
    assert writing["source"] in wt.prompt and wt.lead == "" and wt.language == "markdown"


def test_outcome_kinds_as_capture_files_them():
    assert outcome_kind("same", "same", None) == "accepted"
    assert outcome_kind("edited text", "text", None) == "edited"
    assert outcome_kind("rewritten from the source", "junk", "no content") == "rejected_typed"
    assert outcome_kind("typed", "", None) == "rejected_typed"


def test_settings_from_names_users_and_context_files(tmp_path):
    names = [s.name for s in resolve_settings(None)]
    assert names == ["writing-summary-strong", "writing-summary-weak", "code-style-strong", "writing-summary-drift",
                     "code-correct-strong"]
    assert [s.drift for s in resolve_settings(["writing-summary-drift"])] == [True]
    ctx = tmp_path / "notes.jsonl"
    ctx.write_text(json.dumps({"id": "a", "prompt": "Say hi."}) + "\n")
    (custom,) = resolve_settings(None, "tests.test_bench_users:EchoUser", str(ctx))
    assert custom.contexts == str(ctx) and custom.name.endswith("@notes") and not custom.drift
    assert hasattr(custom.make_user(0), "edit")
    with pytest.raises(ValueError, match="--contexts"):
        resolve_settings(None, "tests.test_bench_users:EchoUser")
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_settings(["no-such-user"])


# --- the whole quick bench ----------------------------------------------------------------------------


def _bench(*args, tmp_path: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDLINE_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "training.bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def test_quick_bench_writes_the_report(tmp_path, tiny_model_dir):  # noqa: F811
    """The quick bench as `redline bench -- --quick` runs it: a writing user whose preference drifts and
    a code user, 10 offline edits, 4 online rounds, one seed, every learner on the tiny model."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = _bench("--quick", "--model", str(tiny_model_dir), "--out", str(out), "--work", str(work),
                  "--progress", "none", tmp_path=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["report"] == str(out / "report.md")
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["runs"]) == 2
    md = (out / "report.md").read_text()

    for run in results["runs"]:
        costs = run["online"]["costs"]
        assert set(costs) == set(METHODS), (run["setting"], run.get("train"), run.get("notes"))
        assert all(len(xs) == 4 and all(c >= 0 for c in xs) for xs in costs.values())
        # Late answers with one of the policies each round, and pays what its user made of that answer.
        assert len(run["online"]["late_arms"]) == 4 and set(run["online"]["late_arms"]) <= set(METHODS) - {"late"}
        assert run["train"]["counts"]["loaded"] == 10
        # The store holds the offline log exactly as capture writes it: the prompt the model read.
        db = work / run["setting"] / "seed0" / "redline.db"
        rows = sqlite3.connect(db).execute(
            "SELECT s.prompt, s.language, s.policy, o.kind FROM suggestions s JOIN outcomes o ON o.suggestion_id = s.id"
        ).fetchall()
        assert len(rows) == 10 and {r[2] for r in rows} == {"base"}
        if run["setting"] == "code-style-strong":
            assert all(r[0].endswith('"""\n' + CODE_INDENT) and r[1] == "python" for r in rows)
            assert set(run["online"]["passed"]) == set(METHODS)
        else:
            assert all(r[0].startswith("<|im_start|>") and r[1] == "markdown" for r in rows)
            assert run["online"]["switch_after"] == 2
        online = [json.loads(line) for line in (db.parent / "online.jsonl").read_text().splitlines()]
        assert len(online) == 4 * len(METHODS)

    # The table: every method, every setting, and Max SubOpt as recomputed from the runs.
    section = md.split("## Mean edit cost per round (Table 1)")[1].split("\n\n")[2]
    lines = section.strip().splitlines()
    assert lines[0] == "| Method | writing-summary-drift | code-style-strong | Max SubOpt |"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    assert set(rows) == {LABELS[m] for m in METHODS}
    means = {s: {m: v[0] for m, v in ms.items()} for s, ms in report.method_means(results["runs"]).items()}
    for m, so in report.max_subopt(means).items():
        assert rows[LABELS[m]][-1] == f"{so['value']:.3f}"
        for i, s in enumerate(["writing-summary-drift", "code-style-strong"]):
            assert float(re.sub(r"[*]", "", rows[LABELS[m]][i])) == pytest.approx(means[s][m], abs=5e-4)
    assert min(report.max_subopt(means).values(), key=lambda v: v["value"])["value"] >= 0
    for heading in ("## pass@1 on the code settings", "## Drift", "## Cost over the online rounds", "## Timings",
                    "## Training and the validation gate, per run"):  # fmt: skip
        assert heading in md
    assert "Command: `python -m training.bench --quick" in md

    # The plots exist, are PNGs, and the report links them.
    for name in ("cost-writing-summary-drift.png", "cost-code-style-strong.png", "summary.png"):
        png = out / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert f"(plots/{name})" in md
    assert not (work / "code-style-strong" / "seed0" / "versions").exists()  # adapters go unless kept


def test_bench_runs_any_user_on_any_contexts(tmp_path, tiny_model_dir):  # noqa: F811
    """`--user module:attr --contexts file.jsonl`: a user written elsewhere, contexts from a file."""
    ctx = tmp_path / "greetings.jsonl"
    names = [f"Person{i}" for i in range(40)]
    ctx.write_text("".join(json.dumps({"id": n, "prompt": f"Greet {n} in one sentence."}) + "\n" for n in names))
    out = tmp_path / "out"
    proc = _bench("--quick", "--model", str(tiny_model_dir), "--user", "tests.test_bench_harness:Greeter",
                  "--contexts", str(ctx), "--edits", "8", "--rounds", "2", "--learners", "sup",
                  "--out", str(out), "--work", str(tmp_path / "work"), "--progress", "none",
                  tmp_path=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    (run,) = results["runs"]
    assert run["setting"] == "tests.test_bench_harness:Greeter@greetings"
    assert set(run["online"]["costs"]) == {"base", "sup", "late"}
    assert run["online"]["passed"] is None and "## pass@1" not in (out / "report.md").read_text()


class Greeter:
    """A user who wants every answer to be "Hello, <name>!"."""

    def edit(self, context, response: str) -> str:
        name = re.search(r"Greet (\w+)", context["prompt"]).group(1)
        return f"Hello, {name}!"


def test_redline_bench_runs_the_bench_module(tmp_path):
    env = {**os.environ, "REDLINE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "server", "bench", "--", "--help"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0 and "usage: python -m training.bench" in proc.stdout and "--quick" in proc.stdout
