"""The bench's figures and its Markdown report, from the runs' records (`results.json`).

- `method_means`: per setting and method, the mean over seeds (± the sample standard deviation) of
  each run's mean cost per online round — the paper's Table 1.
- `max_subopt`: per method, the largest gap over settings between it and the best method of that
  setting (the paper's "Max SubOpt"); the ensembles should have the smallest.
- pass@1 of the code settings, cost before and after a drift, the Late bandit's picks, what the
  trainer's validation gate made of each policy, timings measured and extrapolated to a full run.
- `plot_rounds`: cost over the online rounds per setting (PNG, matplotlib's Agg backend).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

from training.bench.harness import LABELS, METHODS

COST_CAP = 1.0  # as server.bandit.BanditConfig.cost_cap: one rewrite counts as one unit


def capped(cost: float, cap: float | None = COST_CAP) -> float:
    return cost if cap is None else min(cost, cap)


def run_means(run: dict, cap: float | None = COST_CAP) -> dict[str, float]:
    """Mean cost per online round of each method in one run."""
    costs = (run.get("online") or {}).get("costs") or {}
    return {m: sum(capped(c, cap) for c in xs) / len(xs) for m, xs in costs.items() if xs}


def _stats(xs: list[float]) -> Stat:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


Stat = tuple[float, float | None, int]  # mean over seeds, sample standard deviation (None for one seed), seeds


def method_means(runs: list[dict], cap: float | None = COST_CAP) -> dict[str, dict[str, Stat]]:
    """{setting: {method: (mean over seeds, std over seeds or None, seeds)}}."""
    per: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for m, v in run_means(run, cap).items():
            per.setdefault(run["setting"], {}).setdefault(m, []).append(v)
    return {s: {m: _stats(xs) for m, xs in ms.items()} for s, ms in per.items()}


def max_subopt(means: dict[str, dict[str, float]]) -> dict[str, dict]:
    """{method: {"value", "setting", "settings", "complete"}} from {setting: {method: mean cost}}.

    The gap in a setting is the method's cost minus the lowest cost of any method there (costs: lower
    is better). A method missing from some setting is scored on the settings it ran in and marked
    incomplete."""
    out: dict[str, dict] = {}
    methods = {m for ms in means.values() for m in ms}
    for m in methods:
        gaps = {s: ms[m] - min(ms.values()) for s, ms in means.items() if m in ms}
        worst = max(gaps, key=lambda s: gaps[s])
        out[m] = {"value": gaps[worst], "setting": worst, "settings": len(gaps), "complete": len(gaps) == len(means)}
    return out


def pass_rates(runs: list[dict]) -> dict[str, dict[str, Stat]]:
    """{setting: {method: pass@1 mean over seeds, std, seeds}} for the runs that ran tests."""
    per: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        passed = (run.get("online") or {}).get("passed")
        for m, xs in (passed or {}).items():
            if xs:
                per.setdefault(run["setting"], {}).setdefault(m, []).append(sum(xs) / len(xs))
    return {s: {m: _stats(xs) for m, xs in ms.items()} for s, ms in per.items()}


def drift_split(runs: list[dict], cap: float | None = COST_CAP) -> dict[str, dict[str, tuple[float, float]]]:
    """{setting: {method: (mean cost before the switch, after)}} for drift runs, over seeds."""
    per: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for run in runs:
        online = run.get("online") or {}
        k = online.get("switch_after")
        if not k:
            continue
        for m, xs in (online.get("costs") or {}).items():
            before, after = per.setdefault(run["setting"], {}).setdefault(m, ([], []))
            before += [capped(c, cap) for c in xs[:k]]
            after += [capped(c, cap) for c in xs[k:]]
    return {s: {m: (statistics.fmean(b) if b else math.nan, statistics.fmean(a) if a else math.nan)
                for m, (b, a) in ms.items()} for s, ms in per.items()}  # fmt: skip


# --- timings ------------------------------------------------------------------------------------------


PHASES = ("offline_s", "train_s", "online_s")


def _figure(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def validation_agreement(runs: list[dict], cap: float | None = COST_CAP) -> dict[str, dict]:
    """Does the trainer's validation predict what the user then does online? For each of its two
    figures, the greedy answers' capped cost against held-out y′ (what the gate and Late's warm start
    used until they moved to the log-loss) and the log-loss of y′ (what they use now, with Early and
    the Mixture): the share of policy pairs whose order it gets right (pairs tied online left out), and
    the mean online regret of serving the policy it ranks first instead of the run's best. Trained policies and the base model only (the
    Mixture's validation is not comparable across runs where the bench fitted it)."""
    out = {}
    for key, name in (("capped_cost", "cost"), ("nll", "log-loss")):
        right = pairs = 0
        regrets = []
        for run in runs:
            val = (run.get("train") or {}).get("validation") or {}
            online = run_means(run, cap)
            pols = [p for p in METHODS if p not in ("mixture", "late")
                    and p in online and isinstance((val.get(p) or {}).get(key), (int, float))]  # fmt: skip
            if len(pols) < 2:
                continue
            v = {p: float(val[p][key]) for p in pols}
            for i, a in enumerate(pols):
                for b in pols[i + 1 :]:
                    if online[a] != online[b] and v[a] != v[b]:
                        pairs += 1
                        right += (v[a] < v[b]) == (online[a] < online[b])
            regrets.append(online[min(pols, key=v.get)] - min(online[p] for p in pols))
        if regrets:
            out[name] = {"agree": right / pairs if pairs else math.nan, "pairs": pairs,
                         "regret": statistics.fmean(regrets), "runs": len(regrets)}  # fmt: skip
    return out


def timing_summary(runs: list[dict]) -> dict:
    """Per-phase totals and the per-unit rates the extrapolation uses."""
    tot: Counter = Counter()
    edits = rounds = tokens = val_edits = 0
    gen_s = validate_s = 0.0
    for run in runs:
        for k, v in run.get("timings", {}).items():
            tot[k] += v
        edits += (run.get("offline") or {}).get("edits", 0)
        rounds += (run.get("online") or {}).get("rounds", 0)
        train = run.get("train") or {}
        validate_s += (train.get("seconds") or {}).get("validate", 0.0)
        val_edits += (train.get("counts") or {}).get("validation", 0)
        for part in ("offline", "online"):
            g = (run.get(part) or {}).get("generation") or {}
            tokens += g.get("tokens", 0)
            gen_s += g.get("generate_s", 0.0)
    n = max(len(runs), 1)
    # Share of a core the bench had (process CPU time / wall time): below 1 on a machine shared with
    # other work. Dividing by it gives the rates on a core of its own (one torch thread).
    share = {p: tot[p.replace("_s", "_cpu_s")] / tot[p] if tot[p] and tot.get(p.replace("_s", "_cpu_s")) else None
             for p in PHASES}  # fmt: skip
    return {
        "runs": len(runs),
        "totals": dict(tot),
        "core_share": share,
        "per_edit_offline_s": tot["offline_s"] / edits if edits else None,
        "per_run_train_s": tot["train_s"] / n,
        # Training runs a fixed number of steps per learner; validation grows with the held-out edits.
        "per_run_train_fixed_s": (tot["train_s"] - validate_s) / n,
        "per_val_edit_s": validate_s / val_edits if val_edits else None,
        "per_round_online_s": tot["online_s"] / rounds if rounds else None,
        "tokens": tokens,
        "ms_per_token": 1000 * gen_s / tokens if tokens else None,
    }


def validation_edits(edits: int, val_fraction: float = 0.2, min_val: int = 4) -> int:
    """How many of `edits` the trainer holds out (training.data.split_edits' rule)."""
    return min(max(math.ceil(val_fraction * edits), min_val), edits // 2)


def extrapolate(summary: dict, edits: int, rounds: int, runs: int, load_s: float = 0.0) -> dict:
    """Seconds a bench of `runs` (settings × seeds) runs of `edits` offline edits and `rounds` online
    rounds would take at the measured rates: offline time grows with the edits, validation with the
    held-out edits, online time with the rounds; the learners' fixed steps cost what they cost.
    `total_s` at the wall-clock rates measured; `dedicated_total_s` with each phase's time scaled by
    the share of a core it had (what a machine with a core free for the bench would take)."""
    share = summary.get("core_share") or {}

    def scale(phase: str) -> float:
        return share.get(phase) or 1.0

    offline = (summary["per_edit_offline_s"] or 0) * edits
    train = summary["per_run_train_fixed_s"] + (summary["per_val_edit_s"] or 0) * validation_edits(edits)
    online = (summary["per_round_online_s"] or 0) * rounds
    per_run = offline + train + online
    dedicated = offline * scale("offline_s") + train * scale("train_s") + online * scale("online_s")
    return {"per_run_s": per_run, "total_s": load_s + runs * per_run,
            "dedicated_per_run_s": dedicated, "dedicated_total_s": load_s + runs * dedicated}  # fmt: skip


# --- plots --------------------------------------------------------------------------------------------


def plot_rounds(runs: list[dict], out_dir: Path, cap: float | None = COST_CAP) -> list[Path]:
    """One PNG per setting: each method's cost per online round, mean over seeds (band: ± std); a
    dashed line where a drifting user changes its preference. Plus `summary.png`: mean cost per
    method and setting as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    settings = list(dict.fromkeys(r["setting"] for r in runs))
    from matplotlib.ticker import MaxNLocator

    colors = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(METHODS)}
    # Methods often answer alike (an adapter that barely moved): markers and dashes keep them apart.
    markers = dict(zip(METHODS, "osv^DPX"))
    dashes = dict(zip(METHODS, ["-", "--", "-.", ":", "--", "-", "-"]))
    for setting in settings:
        mine = [r for r in runs if r["setting"] == setting and r.get("online")]
        if not mine:
            continue
        fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
        for m in METHODS:
            series = [[capped(c, cap) for c in r["online"]["costs"][m]] for r in mine if r["online"]["costs"].get(m)]
            if not series:
                continue
            length = min(len(s) for s in series)
            xs = list(range(1, length + 1))
            mean = [statistics.fmean(s[t] for s in series) for t in range(length)]
            ax.plot(xs, mean, marker=markers[m], ms=5, ls=dashes[m], lw=2.0 if m in ("mixture", "late") else 1.2,
                    color=colors[m], label=LABELS[m], alpha=0.85)  # fmt: skip
            if len(series) > 1:
                sd = [statistics.stdev(s[t] for s in series) for t in range(length)]
                ax.fill_between(xs, [a - b for a, b in zip(mean, sd)], [a + b for a, b in zip(mean, sd)],
                                color=colors[m], alpha=0.08)  # fmt: skip
        k = mine[0]["online"].get("switch_after")
        if k:
            ax.axvline(k + 0.5, color="grey", ls="--", lw=1)
            ax.text(k + 0.6, 0.97, "preference changes", transform=ax.get_xaxis_transform(), fontsize=8, va="top")
        ax.set_xlabel("online round")
        ax.set_ylabel("edit cost" + (f" (capped at {cap:g})" if cap is not None else ""))
        ax.set_title(f"{setting}: cost per round ({len(mine)} seed{'s' if len(mine) > 1 else ''})")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"cost-{_file(setting)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    table = method_means(runs, cap)
    if table:
        fig, ax = plt.subplots(figsize=(max(7, 1.8 * len(table) + 1.5), 4), dpi=110)
        width = 0.8 / len(METHODS)
        for i, m in enumerate(METHODS):
            xs, ys, es = [], [], []
            for j, s in enumerate(table):
                if m in table[s]:
                    xs.append(j + (i - len(METHODS) / 2 + 0.5) * width)
                    ys.append(table[s][m][0])
                    es.append(table[s][m][1] or 0.0)
            if xs:
                spread = es if any(es) else None  # one seed: no error bars
                ax.bar(xs, ys, width, yerr=spread, color=colors[m], label=LABELS[m], capsize=2)
        ax.set_xticks(range(len(table)), list(table), rotation=15, fontsize=8)
        ax.set_ylabel("mean edit cost per round")
        ax.set_title("Mean cost per round by method and setting (lower is better)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out_dir / "summary.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _file(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# --- Markdown -----------------------------------------------------------------------------------------


def _cell(stat: Stat | None, best: bool = False, digits: int = 3) -> str:
    if stat is None:
        return "—"
    mean, sd, _ = stat
    text = f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")
    return f"**{text}**" if best else text


def _seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s" if s >= 10 else f"{s:.2g} s"


def cost_table(runs: list[dict], cap: float | None = COST_CAP) -> tuple[list[str], dict]:
    """Markdown lines of the Table-1-style table, and its Max SubOpt figures."""
    table = method_means(runs, cap)
    settings = list(table)
    means = {s: {m: v[0] for m, v in ms.items()} for s, ms in table.items()}
    subopt = max_subopt(means)
    lines = ["| Method | " + " | ".join(settings) + " | Max SubOpt |", "|---" * (len(settings) + 2) + "|"]
    for m in METHODS:
        if not any(m in table[s] for s in settings):
            continue
        cells = []
        for s in settings:
            best = m in means[s] and means[s][m] == min(means[s].values())
            cells.append(_cell(table[s].get(m), best))
        so = subopt.get(m)
        so_text = "—" if so is None else f"{so['value']:.3f}" + ("" if so["complete"] else "*")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + f" | {so_text} |")
    return lines, subopt


def _extremes(subopt: dict[str, dict]) -> str:
    """Which methods have the smallest and the largest Max SubOpt (ties named together)."""
    values = {m: round(v["value"], 3) for m, v in subopt.items()}
    order = [m for m in METHODS if m in values]
    low, high = min(values.values()), max(values.values())
    lows = ", ".join(LABELS[m] for m in order if values[m] == low)
    highs = [m for m in order if values[m] == high]
    where = ", ".join(sorted({subopt[m]["setting"] for m in highs}))
    return (f"Smallest Max SubOpt: {lows} ({low:.3f}); largest: {', '.join(LABELS[m] for m in highs)} "
            f"({high:.3f}, in {where}).")  # fmt: skip


LEARNERS = ("sup", "pref", "cost", "early")
ENSEMBLES = ("early", "mixture", "late")


def targets(runs: list[dict], settings: list[dict] | None = None) -> list[tuple[str, bool | None, str]]:
    """The bench's targets checked against the runs: (target, met — None when the runs cannot say, why).

    Costs are the capped means of the Table 1 table. A strong writing setting is a setting whose user
    name says "writing" and "strong" (the paper's complete edits)."""
    table = method_means(runs)
    means = {st: {m: v[0] for m, v in ms.items()} for st, ms in table.items()}
    out: list[tuple[str, bool | None, str]] = []
    if not means:
        return out
    lower = {m: [st for st, ms in means.items() if m in ms and "base" in ms and ms[m] < ms["base"]] for m in LEARNERS}
    ran = [m for m in LEARNERS if any(m in ms for ms in means.values())]
    missing = [LABELS[m] for m in ran if not lower[m]]
    out.append(("Every learner lowers cost below Base in at least one setting", not missing,
                "; ".join(f"{LABELS[m]}: {', '.join(lower[m]) or 'nowhere'}" for m in ran)))  # fmt: skip
    best = {st: sorted(m for m, v in ms.items() if v == min(ms.values())) for st, ms in means.items()}
    everywhere = [m for m in METHODS if all(m in b for b in best.values())]
    out.append(("No method is best everywhere", not everywhere,
                ("best everywhere (ties included): " + ", ".join(LABELS[m] for m in everywhere)) if everywhere
                else "best per setting: " + "; ".join(f"{st}: {', '.join(LABELS[m] for m in b)}"
                                                      for st, b in best.items())))  # fmt: skip
    subopt = max_subopt(means)
    if subopt:
        low = min(v["value"] for v in subopt.values())
        ens = {m: subopt[m]["value"] for m in ENSEMBLES if m in subopt}
        best_ens = min(ens, key=ens.get) if ens else None
        met = best_ens is not None and ens[best_ens] <= low + 1e-12
        out.append(("The best ensemble has the lowest Max SubOpt", met if ens else None,
                    ", ".join(f"{LABELS[m]} {v['value']:.3f}" for m, v in
                              sorted(subopt.items(), key=lambda kv: kv[1]["value"]))))  # fmt: skip
    users = {s["name"]: s.get("user", s["name"]) for s in settings or []}
    strong = [st for st in means if "writing" in users.get(st, st) and "strong" in users.get(st, st)]
    for st in strong:
        ms = means[st]
        learned = {m: v for m, v in ms.items() if m != "base"}
        if "base" not in ms or not learned or ms["base"] <= 0:
            out.append((f"{st}: cost after learning ≤ 50% of Base", None, "no base or learned figure"))
            continue
        m = min(learned, key=learned.get)
        ratio = learned[m] / ms["base"]
        out.append((f"{st}: cost after learning ≤ 50% of Base", ratio <= 0.5,
                    f"best learned method {LABELS[m]} {learned[m]:.3f} against Base {ms['base']:.3f} ({ratio:.0%})"))
    for st, ms in pass_rates(runs).items():
        if "base" not in ms:
            continue
        base = ms["base"]
        learned = {m: v for m, v in ms.items() if m != "base"}
        worse = [m for m, v in learned.items() if v[0] < base[0]]
        spread = lambda v: f"{v[0]:.2f}" + (f" ± {v[1]:.2f}" if v[1] is not None else "")  # noqa: E731
        out.append((f"{st}: pass@1 after learning ≥ Base's", not worse,
                    f"Base {spread(base)}; " + ", ".join(f"{LABELS[m]} {spread(v)}" for m, v in learned.items())))
    return out


def render(results: dict, plots: list[Path], report_dir: Path) -> str:
    """The report's Markdown. `plots` are linked relative to `report_dir`."""
    runs = results["runs"]
    cfg = results["config"]
    seeds = sorted({r["seed"] for r in runs})
    out = [f"# Redline bench: learning from edits ({results.get('label') or 'run'})", ""]
    out += [
        f"Protocol of Table 1 of \"Principled Fine-tuning of LLMs from User-Edits\" (NeurIPS 2025): for each "
        f"setting, {cfg['edits']} offline edits of the base model's answers by a simulated user, every learner "
        f"trained on them by Redline's trainer, then {cfg['rounds']} online rounds on unseen contexts in which "
        f"every method answers and the user edits; {len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
        f"({', '.join(map(str, seeds))}). Late is the server's UCB bandit over the trained policies, "
        "warm-started from the trainer's validation (policies tried in the order of their log-loss of y′, each "
        "starting at the base model's validation cost) and learning from each round's cost.",
        "",
        f"- Command: `{results['command']}`",
        f"- Model: `{results['model']}`",
        f"- Started {results.get('started')}, took {_seconds(results.get('seconds'))}"
        + (" (finished)" if results.get("complete") else " (INCOMPLETE: runs still missing)"),
        f"- Answers: writing at most {cfg['writing_tokens']} tokens (chat template), code at most "
        f"{cfg['code_tokens']} tokens (a function body); prompts of at most {cfg['max_prompt_tokens']} tokens.",
        "",
        "## Settings",
        "",
        "| Setting | User | Contexts | Drift | What the user wants |",
        "|---|---|---|---|---|",
    ]
    for s in cfg["settings"]:
        drift = "yes" if s["drift"] else ""
        out.append(f"| {s['name']} | `{s['user']}` | `{s['contexts']}` | {drift} | {s['description']} |")

    lines, subopt = cost_table(runs)
    out += ["", "## Mean edit cost per round (Table 1)", "",
            f"Edit cost per online round, capped at {COST_CAP:g} (as the Late bandit caps it), averaged over the "
            "rounds of a run; mean ± standard deviation over seeds; lower is better, the best of each setting "
            "in bold. Max SubOpt: the method's largest gap to the best method of a setting, over settings "
            "(* = the method did not run in every setting).", "", *lines]  # fmt: skip
    if subopt:
        out += ["", _extremes(subopt)]
    checks = targets(runs, cfg.get("settings"))
    if checks:
        out += ["", "## Against the targets", "",
                "Each target of the bench, checked on the capped means above (and pass@1 below).", "",
                "| Target | Met | Figures |", "|---|---|---|"]  # fmt: skip
        out += [f"| {t} | {'yes' if ok else 'no' if ok is not None else 'cannot tell'} | {why} |" for t, ok, why in checks]
    raw, _ = cost_table(runs, None)
    out += ["", "Uncapped (the paper's cost as it is: an empty answer costs as many units as the user typed words):",
            "", *raw]  # fmt: skip

    passes = pass_rates(runs)
    if passes:
        out += ["", "## pass@1 on the code settings", "",
                "Share of online rounds whose answer passes the problem's HumanEval tests in the sandbox "
                "(`training.bench.sandbox`), mean ± std over seeds.", ""]  # fmt: skip
        settings = list(passes)
        out += ["| Method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
        for m in METHODS:
            if any(m in passes[s] for s in settings):
                out.append(f"| {LABELS[m]} | " + " | ".join(_cell(passes[s].get(m), digits=2) for s in settings) + " |")

    drift = drift_split(runs)
    if drift:
        out += ["", "## Drift", "", "Mean capped cost per round before and after the user's preference changes.", ""]
        for s, ms in drift.items():
            out += [f"**{s}**", "", "| Method | before | after |", "|---|---|---|"]
            ordered = sorted(ms.items(), key=lambda x: METHODS.index(x[0]))
            out += [f"| {LABELS[m]} | {b:.3f} | {a:.3f} |" for m, (b, a) in ordered]
            out.append("")

    if plots:
        out += ["", "## Cost over the online rounds", ""]
        for p in plots:
            rel = Path(p).resolve().relative_to(Path(report_dir).resolve())
            out += [f"![{p.stem}]({rel.as_posix()})", ""]

    out += ["## Training and the validation gate, per run", "",
            "Validation log-loss / cost of each policy as Redline's trainer scored it: the log-loss per token of "
            "the held-out y′ (what the gate, the version's best policy and Late's first picks rank by; the "
            "Mixture's on edits its weights were not fitted on), and its greedy answer's cost against y′, cut "
            "as the logged answers were (uncapped); ✗ = the trainer's gate would not serve it (the bench serves "
            "every trained policy anyway). Late: how often the bandit picked each policy.", "",
            "| Setting | Seed | Edits (train/val) | Offline cost | Validation log-loss / cost | Mixture weights | Late picks |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        train = r.get("train") or {}
        counts = train.get("counts") or {}
        val = train.get("validation") or {}
        vtext = ", ".join(f"{p} {_figure(v.get('nll'))}/{v['cost']:.2f}{'' if v.get('served') else ' ✗'}"
                          for p, v in val.items() if v.get("cost") is not None) or train.get("error", "—")  # fmt: skip
        mix = (train.get("mixture") or {})
        mtext = ", ".join(f"{p} {w:.2f}" for p, w in (mix.get("weights") or {}).items())
        if mix.get("source") == "bench":
            mtext += " (fitted by the bench: the trainer served too few policies)"
        picks = Counter((r.get("online") or {}).get("late_arms") or [])
        off = r.get("offline") or {}
        out.append(
            f"| {r['setting']} | {r['seed']} | {counts.get('train', '—')}/{counts.get('validation', '—')} "
            f"(kept {counts.get('kept', '—')} of {counts.get('loaded', '—')}) | "
            f"{(off.get('mean_cost') or 0):.2f} | {vtext} | {mtext or '—'} | "
            + ", ".join(f"{p} {n}" for p, n in picks.most_common())
            + " |"
        )
    agreement = validation_agreement(runs)
    if agreement:
        out += ["", "Does validation predict the online cost? Over the runs, the share of pairs of policies "
                "(base and trained) that each validation figure puts in the order the online cost does, and "
                "the mean online cost lost by serving the policy it ranks first instead of the run's best:", "",
                "| Validation figure | pairs in the online order | online regret of its first pick |",
                "|---|---|---|"]  # fmt: skip
        for name, a in agreement.items():
            out.append(f"| {name} | {a['agree']:.0%} of {a['pairs']} | {a['regret']:.3f} ({a['runs']} runs) |")
    notes = [(r["setting"], r["seed"], n) for r in runs for n in r.get("notes", [])]
    notes += [(r["setting"], r["seed"], f"the gate would not serve {p}: {v.get('reason')}") for r in runs
              for p, v in ((r.get("train") or {}).get("validation") or {}).items() if not v.get("served")]  # fmt: skip
    skipped = [(r["setting"], r["seed"], k, v) for r in runs
               for k, v in ((r.get("train") or {}).get("skipped") or {}).items()]  # fmt: skip
    if skipped or notes:
        out += ["", "Learners skipped, the gate's reasons, notes:", ""]
        out += [f"- {s} seed {seed}: {k}: {v}" for s, seed, k, v in skipped]
        out += [f"- {s} seed {seed}: {n}" for s, seed, n in notes]

    t = results.get("timings") or timing_summary(runs)
    out += ["", "## Timings", "",
            "Wall-clock time, and the share of a CPU core the bench had in each phase (its process CPU time "
            "over wall time; below 100% when other work shares the machine).", "",
            "| Phase | total | per run | share of a core |", "|---|---|---|---|"]  # fmt: skip
    n = max(t["runs"], 1)
    for phase in PHASES:
        total = t["totals"].get(phase, 0.0)
        share = (t.get("core_share") or {}).get(phase)
        share_text = "—" if share is None else f"{100 * share:.0f}%"
        out.append(f"| {phase.removesuffix('_s')} | {_seconds(total)} | {_seconds(total / n)} | {share_text} |")
    out += [
        "",
        f"Model load {_seconds(results.get('load_seconds'))}; generation {t['ms_per_token'] or 0:.0f} ms a token "
        f"({t['tokens']} tokens); offline {_seconds(t['per_edit_offline_s'])} an edit (cached base answers "
        f"included); training {_seconds(t['per_run_train_fixed_s'])} a run plus validation "
        f"{_seconds(t['per_val_edit_s'])} per held-out edit; online "
        f"{_seconds(t['per_round_online_s'])} a round (every method).",
    ]
    full = results.get("extrapolated")
    if full:
        dedicated = full.get("dedicated_total_s")
        alone = f"; {_seconds(dedicated)} with a core to itself" if dedicated and dedicated < full["total_s"] - 1 else ""
        out += ["", f"Extrapolated to the full default bench ({full['runs']} runs of {full['edits']} edits and "
                f"{full['rounds']} rounds): {_seconds(full['per_run_s'])} a run, {_seconds(full['total_s'])} in all"
                f"{alone}, at the rates measured here (offline time scaled by the edits, validation by the held-out "
                "edits, online time by the rounds; the learners' steps are fixed)."]  # fmt: skip
    out += ["", "Everything the runs recorded is in `results.json` beside this report.", ""]
    return "\n".join(out)
