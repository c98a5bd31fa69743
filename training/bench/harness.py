"""`redline bench`: every learner against simulated users, in the protocol of the paper's Table 1.

For each setting (a simulated user on a set of contexts) and each seed:

1. Offline log. The base model answers `edits` contexts of the train split (greedy, through the
   serving runtime); the user edits each answer; every (x, y, y′) goes into a fresh store exactly as
   capture writes it (`Store.record_suggestion`, `Store.record_outcome`).
2. Training. `training.pipeline.run` trains SUP, PREF, COST and Early on that store and fits the
   Mixture, into a model version of its own.
3. Online rounds. On `rounds` contexts of the online split, every method answers every context and a
   user of its own edits the answer: base, each trained adapter and the Mixture through the runtime;
   Late is the server's bandit over all of them (`server.bandit`, warm-started from the version's
   validation: `server.bandit.warm_start`), which picks one policy per round and learns from the
   cost it sees. Each method's user has the same seed, so a weak user drops the same preferences
   for every method in a round. In a drift setting the user's preference changes halfway through the online rounds
   (the offline log is all before the change).
4. Seeds. The seed draws the contexts of both splits, the users' choices and the learners' seed.

What the model reads (the stored prompt is exactly that text, and what the learners train on):

- writing: the user message (`contexts.chat_message`: instruction, blank line, the text) in the
  model's chat template with the assistant's turn opened; a model without a template reads the
  context's plain `prompt`. The answer ends at end-of-text or after `writing_tokens` tokens.
- code: the HumanEval prompt (signature and docstring) and the body's first indent, so that a small
  instruction model writes a body rather than starting over; y is what follows, up to the first line
  back at column 0 (the function has ended, as in HumanEval's own stop sequences) or `code_tokens`
  tokens. The user, the cost and the sandbox see the body: that indent + y. y′ is the user's body
  without its leading indent, so that x + y′ is the program the user settled on.

Contexts whose prompt is longer than `max_prompt_tokens` tokens are left out (and counted): the
learners keep only the last `max_prompt_tokens` tokens of a prompt, and a model must be trained on
what it read.

Costs are the paper's (word-level Levenshtein over tokens of y). The report's headline caps each at 1,
as the Late bandit does: a model that answers with nothing would otherwise cost as many units as the
user typed words and swamp every mean. The uncapped means are reported next to them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from server.postprocess import function_end  # a function body ends at the first line at column 0

METHODS = ("base", "sup", "pref", "cost", "early", "mixture", "late")
TRAINED = ("sup", "pref", "cost", "early")
LABELS = {"base": "Base", "sup": "SUP", "pref": "PREF", "cost": "COST", "early": "Early", "mixture": "Mixture",
          "late": "Late"}  # fmt: skip
# Four settings fit the 90-minute budget: the strong and weak summary users (the paper's complete
# versus partial edits), code, and a drift. They share the base model's summaries. Add
# writing-email-strong (and the others in training.bench.users.SETTINGS) with --settings.
DEFAULT_SETTINGS = (
    "writing-summary-strong",
    "writing-summary-weak",
    "code-style-strong",
    "writing-summary-drift",
    "code-correct-strong",  # the one code user who runs the tests: pass@1 says something only here
)
QUICK_SETTINGS = ("writing-summary-drift", "code-style-strong")
CODE_INDENT = "    "
BASE_KEY = "base"  # generation cache key of the base model (no version)


# --- settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSetting:
    name: str  # the column of the table
    user: str  # a `training.bench.users.SETTINGS` name, or "module:attr"
    contexts: str  # a `load_contexts` name, or a JSONL file
    drift: bool = False  # the preference changes halfway through the online rounds
    description: str = ""

    def make_user(self, seed: int, switch_after: int | None = None):
        """A fresh user. `switch_after` (drift settings): the edits before its preference changes. A
        "module:attr" naming an object rather than a class or factory gives that same object every
        time: its methods then share one user."""
        from training.bench.users import SETTINGS, load_user, make_user

        if self.user in SETTINGS:
            kwargs = {"switch_after": switch_after} if self.drift and switch_after is not None else {}
            return make_user(self.user, seed, **kwargs)
        return load_user(self.user, seed)


def resolve_settings(
    names: list[str] | None, user: str | None = None, contexts: str | None = None
) -> list[BenchSetting]:
    """The settings of a run: named ones, or one for `--user` (with `--contexts`, or its own contexts).
    `contexts` alone puts every named setting's user on those contexts."""
    from training.bench.users import SETTINGS

    if user:
        setting = SETTINGS.get(user)
        if setting is None and not contexts:
            raise ValueError(f"--user {user}: say which contexts it edits with --contexts (a set name or a JSONL file)")
        ctx = contexts or setting.contexts
        name = user if not contexts else f"{user}@{Path(contexts).stem if Path(contexts).suffix else contexts}"
        drift = bool(setting and setting.name.endswith("-drift"))
        return [BenchSetting(name, user, ctx, drift, setting.description if setting else f"{user} on {ctx}")]
    out = []
    for name in names or DEFAULT_SETTINGS:
        if name not in SETTINGS:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)} (or use --user module:attr)")
        s = SETTINGS[name]
        label = name if not contexts else f"{name}@{Path(contexts).stem if Path(contexts).suffix else contexts}"
        out.append(BenchSetting(label, name, contexts or s.contexts, name.endswith("-drift"), s.description))
    return out


# --- configuration ----------------------------------------------------------------------------------


@dataclass
class BenchConfig:
    settings: list[BenchSetting] = field(default_factory=lambda: resolve_settings(None))
    edits: int = 32  # offline log per setting and seed; the trainer validates on the newest few
    rounds: int = 8  # online rounds per setting and seed
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    writing_tokens: int = 64  # most tokens of a writing answer (3 bullets of 12 words fit)
    code_tokens: int = 96  # most tokens of a function body
    max_prompt_tokens: int = 256  # contexts with longer prompts are left out (the learners' prompt limit)
    threads: int = 0  # torch CPU threads for training and generation; 0: every core (--quick: one fewer)
    keep_versions: bool = False  # keep each run's trained adapters (tens of MB each)
    quick: bool = False
    pipeline: Any = None  # training.pipeline.PipelineConfig; None: `pipeline_config(quick)`

    def __post_init__(self) -> None:
        if self.edits < 4 or self.rounds < 1 or not self.seeds or not self.settings:
            raise ValueError("a bench needs at least 4 offline edits, 1 online round, 1 seed and 1 setting")
        if self.pipeline is None:
            self.pipeline = pipeline_config(self.quick, self.max_prompt_tokens,
                                            max(self.writing_tokens, self.code_tokens))  # fmt: skip

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("pipeline", "settings")}
        out["settings"] = [asdict(s) for s in self.settings]
        return out


def pipeline_config(quick: bool = False, max_prompt_tokens: int = 256, answer_tokens: int = 96):
    """The learners' settings for the bench: a fixed, small number of optimizer steps per learner.

    Full (the default model). The trainer's own defaults (epochs over the edits) spent 9-17 minutes
    on 16 edits with one torch thread (docs/bench): a bench of 15 runs cannot afford them. So every
    learner takes a fixed number of steps of 2 edits. With both cores and length-bucketed batches an
    SFT step costs about 2.6-2.8 s, a DPO step (PREF, Early) about 4.5 s, COST's 3 steps 30 s and
    validation 25-65 s a run. SUP takes the most steps (below): it is the cheapest and the one the
    others start from. Early and COST did not move at all in 2-3 steps at their own rates (their
    answers were the base model's, word for word), so they run at rates that move them about as far
    in their few steps as their defaults would over an epoch of 32 edits. PREF starts from SUP, as
    the trainer has it. PREF and Early start as soon as there are 4 pairs; Early has one λ;
    validation answers may run as long as the answers the users edit (`answer_tokens`; the first
    full run stopped them at 48). `--set` overrides any of it (e.g. --set sup.max_steps=-1 for the
    trainer's epochs).

    Quick (a tiny model): even fewer, shorter rows at high learning rates, as the trainer's tests do.
    """
    from training.early import EarlyConfig
    from training.evaluate import EvalConfig
    from training.pipeline import PipelineConfig
    from training.pref import PrefConfig
    from training.sup import SupConfig

    cfg = PipelineConfig()
    cfg.activate = False  # each run has its own versions folder; nothing is served from it
    cfg.compare_active = False
    lengths = {"max_prompt_tokens": max_prompt_tokens, "max_completion_tokens": 48 if quick else 128}
    if quick:
        # A tiny model's step costs what its 49,152-word output layer costs: few, short rows.
        fast = {"r": 8, "alpha": 16, "batch_size": 4, "grad_accum": 1, "min_edits": 4, **lengths}
        cfg.sup = SupConfig(**fast, learning_rate=1e-2, max_steps=4)
        cfg.pref = PrefConfig(**fast, learning_rate=1e-2, max_steps=2)
        cfg.early = EarlyConfig(**fast, learning_rate=1e-2, max_steps=2, lambdas=[1.0])
        if cfg.cost is not None:
            cfg.cost = replace(cfg.cost, max_steps=2, samples=2, max_new_tokens=6, eval_prompts=0, min_edits=4,
                               learning_rate=1e-2, **lengths)  # fmt: skip
        cfg.eval = EvalConfig(max_new_tokens=24, batch_size=8)
        cfg.split = replace(cfg.split, min_val=3)
        return cfg
    few = {"batch_size": 2, "grad_accum": 1, **lengths}
    # SUP: 24 steps of 2 at 1e-3 (~1.7 passes over 28 training edits). Measured on the strong summary
    # user, seed 1 (base 0.297): 6 steps at 3e-4 on 20 edits 0.232, 16 steps 0.211, 16 steps at 1e-3
    # 0.164, 24 steps at 1e-3 on 32 edits 0.130 -- the last learned the docs' two sentences.
    cfg.sup = SupConfig(**few, max_steps=24, learning_rate=1e-3)
    cfg.pref = PrefConfig(**few, max_steps=4, min_edits=4)
    cfg.early = EarlyConfig(**few, max_steps=4, min_edits=4, lambdas=[1.0], learning_rate=3e-4)
    if cfg.cost is not None:
        cfg.cost = replace(cfg.cost, max_steps=3, learning_rate=5e-4, eval_prompts=0, **lengths)
    # Validation answers may run as long as the answers the users edit: cut shorter, a policy that
    # learned to write the user's longer answers looks worse than the base model it beats online.
    cfg.eval = EvalConfig(max_new_tokens=answer_tokens)
    return cfg


# --- what the model reads, and what the user sees -----------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One context as the model is asked it."""

    prompt: str  # exactly what the model reads (and what the store keeps)
    lead: str  # the end of the prompt that belongs to the answer the user sees (code: the body's indent)
    language: str  # VS Code language id stored with the suggestion
    bound: str  # how the answer is cut, stored with it (server.store.records.BOUNDS)
    max_new_tokens: int
    stop: Callable[[str], int | None] | None

    def shown(self, y: str) -> str:
        """The answer the user edits (and the sandbox runs)."""
        return self.lead + y

    def completion(self, settled: str) -> str:
        """y′ as a continuation of the prompt."""
        return settled[len(self.lead) :] if self.lead and settled.startswith(self.lead) else settled




def task_for(ctx: dict, tokenizer, cfg: BenchConfig) -> Task:
    if ctx.get("domain") == "code" and ctx.get("task", "complete") == "complete":
        prompt = str(ctx["prompt"])
        prompt = prompt if prompt.endswith("\n") else prompt + "\n"
        return Task(prompt + CODE_INDENT, CODE_INDENT, "python", "function", cfg.code_tokens, function_end)
    from training.bench.contexts import chat_message

    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": chat_message(ctx)}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        prompt = str(ctx["prompt"])
    return Task(prompt, "", "markdown", "answer", cfg.writing_tokens, None)


def outcome_kind(settled: str, y: str, content_problem: str | None) -> str:
    """How capture would file the edit: kept as it was, edited, or (content rewritten from the
    source, or nothing was suggested) rejected with the user's own text typed in its place."""
    if settled == y:
        return "accepted"
    if content_problem or not y.strip():
        return "rejected_typed"
    return "edited"


# --- one bench ----------------------------------------------------------------------------------------


class Bench:
    """Runs every (setting, seed) with one runtime and a generation cache shared between them: settings
    on the same contexts (the summary ones) ask the base model the same questions."""

    def __init__(self, model_dir: Path, cfg: BenchConfig, work_dir: Path, progress: str = "auto") -> None:
        from training.lora import cpu_threads

        self.model_dir, self.cfg, self.work = Path(model_dir), cfg, Path(work_dir)
        self.progress_mode = progress
        # A full bench is meant to have the machine to itself, so it takes every core; the quick bench
        # runs inside the test suite beside other work, where spinning threads fight for the cores.
        self.threads = cpu_threads(cfg.threads or (0 if cfg.quick else (os.cpu_count() or 1)))
        self.cache: dict[tuple[str, str, str], tuple[str, int, float]] = {}  # (version, policy, prompt) -> y
        self.sandbox_cache: dict[tuple[str, str], bool] = {}
        self._runtime = None
        self.load_seconds = 0.0

    @property
    def runtime(self):
        if self._runtime is None:
            from server.runtime import Runtime, RuntimeConfig

            clock = time.perf_counter()
            self._runtime = Runtime(self.model_dir, RuntimeConfig(threads=self.threads))
            self.load_seconds = time.perf_counter() - clock
        return self._runtime

    def _bar(self, total: int, desc: str):
        from tqdm import tqdm

        disable = self.progress_mode == "none" or (self.progress_mode == "auto" and not sys.stderr.isatty())
        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, disable=disable)

    def _pipeline_progress(self):
        from training.progress import Progress

        bars = self.progress_mode == "bars" or (self.progress_mode == "auto" and sys.stderr.isatty())
        return Progress("bars" if bars else "none")

    # --- generation ---------------------------------------------------------------------------------

    def answer(self, version_key: str, policy: str, task: Task, timing: dict) -> str:
        key = (version_key, policy, task.prompt)
        hit = self.cache.get(key)
        if hit is None:
            g = self.runtime.generate(task.prompt, task.max_new_tokens, stop=task.stop, policy=policy)
            hit = (g.text, g.tokens, g.total_ms / 1000)
            self.cache[key] = hit
            timing["generate_s"] = timing.get("generate_s", 0.0) + hit[2]
            timing["tokens"] = timing.get("tokens", 0) + hit[1]
            timing["generations"] = timing.get("generations", 0) + 1
        else:
            timing["cached"] = timing.get("cached", 0) + 1
        return hit[0]

    def passes(self, ctx: dict, body: str) -> bool:
        from training.bench.sandbox import check_completion

        key = (ctx["id"], body)
        if key not in self.sandbox_cache:
            self.sandbox_cache[key] = check_completion(ctx, body).passed
        return self.sandbox_cache[key]

    # --- contexts -----------------------------------------------------------------------------------

    def contexts(self, setting: BenchSetting, split: str, n: int, seed: int) -> tuple[list[dict], list[Task], int]:
        """The first `n` contexts of the split (in the seed's order) whose prompts fit, their tasks,
        and how many were left out as too long."""
        from training.bench.contexts import load_contexts

        tokenizer = self.runtime.tokenizer
        picked, tasks, too_long = [], [], 0
        for ctx in load_contexts(setting.contexts, split, None, seed):
            task = task_for(ctx, tokenizer, self.cfg)
            if len(self.runtime.encode(task.prompt)) > self.cfg.max_prompt_tokens:
                too_long += 1
                continue
            picked.append(ctx)
            tasks.append(task)
            if len(picked) == n:
                break
        return picked, tasks, too_long

    # --- the protocol -------------------------------------------------------------------------------

    def run_one(self, setting: BenchSetting, seed: int) -> dict:
        """One setting and seed: offline log, training, online rounds. Returns the run's record."""
        from server.store import Store, SuggestionRecord

        cfg = self.cfg
        work = self.work / _slug(setting.name) / f"seed{seed}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        record: dict[str, Any] = {"setting": setting.name, "seed": seed, "timings": {}}
        timings = record["timings"]

        # 1. The offline log, from the base model.
        clock, cpu = time.perf_counter(), time.process_time()
        self.runtime.use_version(None)
        train_ctx, train_tasks, long_train = self.contexts(setting, "train", cfg.edits, seed)
        user = setting.make_user(seed, switch_after=cfg.edits + cfg.rounds)
        gen: dict = {}
        costs, kinds = [], {}
        db = work / "redline.db"
        t0 = time.time()
        user_s = 0.0
        with Store(db) as store, self._bar(len(train_ctx), f"{setting.name} s{seed}: offline log") as bar:
            for i, (ctx, task) in enumerate(zip(train_ctx, train_tasks)):
                y = self.answer(BASE_KEY, "base", task, gen)
                u = time.perf_counter()
                result = _explain(user, ctx, task.shown(y))
                user_s += time.perf_counter() - u
                final = task.completion(result.text)
                kind = outcome_kind(final, y, result.content)
                kinds[kind] = kinds.get(kind, 0) + 1
                costs.append(result.cost)
                ext = "py" if task.language == "python" else "md"
                rec = SuggestionRecord(
                    uri=f"file:///redline-bench/{_slug(setting.name)}/{i:04d}.{ext}",
                    suggestion=y, prompt=task.prompt, prefix=task.prompt, language=task.language,
                    bound=task.bound, model_version=self.runtime.version, policy="base", created_at=t0 + i,
                )  # fmt: skip
                store.record_suggestion(rec)
                store.record_outcome(rec.id, kind, final, "idle", settled_at=t0 + i + 0.5)
                bar.update(1)
        timings["offline_s"] = time.perf_counter() - clock
        timings["offline_cpu_s"] = time.process_time() - cpu
        timings["offline_generate_s"] = gen.get("generate_s", 0.0)
        timings["offline_user_s"] = user_s
        record["offline"] = {"edits": len(train_ctx), "too_long": long_train, "mean_cost": _mean(costs),
                             "kinds": kinds, "generation": gen}  # fmt: skip

        # 2. Every learner, through the trainer's own pipeline.
        clock, cpu = time.perf_counter(), time.process_time()
        version, policies, mixture = self._train(db, work, seed, record)
        timings["train_s"] = time.perf_counter() - clock
        timings["train_cpu_s"] = time.process_time() - cpu

        # 3. Online rounds.
        clock, cpu = time.perf_counter(), time.process_time()
        self._online(setting, seed, version, policies, mixture, record, work)
        timings["online_s"] = time.perf_counter() - clock
        timings["online_cpu_s"] = time.process_time() - cpu
        if not cfg.keep_versions:
            shutil.rmtree(work / "versions", ignore_errors=True)
        return record

    def _train(self, db: Path, work: Path, seed: int, record: dict):
        """Train every learner; return (the version or None, the policies to serve, mixture info)."""
        from server import versions
        from training import pipeline

        pcfg = _seeded(self.cfg.pipeline, seed)
        pcfg.threads = self.cfg.threads  # the pipeline sets torch's threads again: the bench's choice
        root = work / "versions"
        progress = self._pipeline_progress()
        try:
            result = pipeline.run(self.model_dir, db, pcfg, progress=progress, versions_root=root)
        except Exception as exc:  # nothing trained (too few edits, a failure): the run goes on with the base model
            if not isinstance(exc, pipeline.NothingToTrain):
                traceback.print_exc(file=sys.stderr)
            record["train"] = {"error": f"{type(exc).__name__}: {exc}"}
            return None, ["base"], {}
        finally:
            progress.close()
        version = versions.load_version(result.version, root)
        validation = version.validation
        trained = [p for p in TRAINED if p in version.adapters]
        mixture = {"weights": version.mixture_weights, "source": "pipeline"} if version.mixture_weights else {}
        if not mixture and len(trained) >= 1 and "mixture" in pcfg.learners:
            mixture = self._refit_mixture(version, trained, db, result)
        record["train"] = {
            "version": version.id,
            "counts": result.counts,
            "filter": result.filter,
            "skipped": result.skipped,
            "seconds": result.seconds,
            "validation": {p: {k: v.get(k) for k in ("cost", "capped_cost", "nll", "served", "reason")}
                           for p, v in validation.items()},  # fmt: skip
            "mixture": mixture,
            "steps": {p: r.get("steps") for p, r in result.trained.items() if isinstance(r, dict) and "steps" in r},
        }
        policies = ["base", *trained] + (["mixture"] if mixture.get("weights") else [])
        return version, policies, mixture

    def _refit_mixture(self, version, trained: list[str], db: Path, result) -> dict:
        """The pipeline fits the Mixture over the policies its gate serves only; when the gate served
        none it skips it. The bench serves every trained policy, so it fits the weights over all of
        them (base included) on the same validation edits, with the same EM."""
        from training import data
        from training.mixture import fit_mixture_on_edits, load_policies

        ids = set((version.read_json("edits.json") or {}).get("validation", []))
        val = [e for e in data.load_edits(db) if e.id in ids]
        if not val:
            return {}
        model, tokenizer = load_policies(self.model_dir, {p: version.adapters[p] for p in trained})
        names = ["base", *trained]
        lengths = {"max_prompt_tokens": self.cfg.max_prompt_tokens,
                   "max_completion_tokens": self.cfg.pipeline.sup.max_completion_tokens}  # fmt: skip
        fit = fit_mixture_on_edits(model, tokenizer, names, val, **lengths)
        del model
        return {"weights": fit.by_name, "source": "bench", "why": result.skipped.get("mixture", "")}

    def _online(self, setting, seed, version, policies, mixture, record, work: Path) -> None:
        from server.bandit import Bandit, warm_start

        cfg = self.cfg
        key = BASE_KEY
        if version is not None:
            key = version.id
            self.runtime.use_version(_Served(version, policies, mixture.get("weights", {})))
        served = self.runtime.policies()
        missing = [p for p in policies if p not in served]
        if missing:  # e.g. the Mixture needs the lean decoder: say so rather than score base twice
            record.setdefault("notes", []).append(f"the runtime does not serve {', '.join(missing)}")
            policies = [p for p in policies if p in served]
        online_ctx, online_tasks, long_online = self.contexts(setting, "online", cfg.rounds, seed)
        user_seed = 1000 + seed
        switch = cfg.rounds // 2 if setting.drift else None
        methods = [*policies, "late"]
        users = {m: setting.make_user(user_seed, switch_after=switch) for m in methods}
        validation = (version.validation if version is not None else {}) or {}
        order, priors = warm_start(validation, policies)
        bandit = Bandit.from_observations(key, priors, [], policies=order)
        rounds: dict[str, list[float]] = {m: [] for m in methods}
        passed: dict[str, list[bool]] = {m: [] for m in methods}
        arms: list[str] = []
        gen: dict = {}
        user_s = sandbox_s = 0.0
        code = bool(online_ctx) and all(c.get("domain") == "code" and "test" in c for c in online_ctx)
        log = (work / "online.jsonl").open("w", encoding="utf-8")
        with log, self._bar(len(online_ctx), f"{setting.name} s{seed}: online rounds") as bar:
            for t, (ctx, task) in enumerate(zip(online_ctx, online_tasks)):
                answers = {p: self.answer(key if p != "base" else BASE_KEY, p, task, gen) for p in policies}
                arm = bandit.choose(task.language)
                arms.append(arm)
                for m in methods:
                    y = answers[arm if m == "late" else m]
                    u = time.perf_counter()
                    result = _explain(users[m], ctx, task.shown(y))
                    user_s += time.perf_counter() - u
                    rounds[m].append(result.cost)
                    if m == "late":
                        bandit.update(arm, task.language, result.cost)
                    if code:
                        s = time.perf_counter()
                        passed[m].append(self.passes(ctx, task.shown(y)))
                        sandbox_s += time.perf_counter() - s
                    row = {"round": t, "context": ctx["id"], "method": m, "arm": arm if m == "late" else m,
                           "cost": result.cost, "y": y, "y_prime": task.completion(result.text)}  # fmt: skip
                    log.write(json.dumps(row) + "\n")
                bar.update(1)
        record["online"] = {
            "rounds": len(online_ctx),
            "too_long": long_online,
            "switch_after": switch,
            "costs": rounds,
            "passed": passed if code else None,
            "late_arms": arms,
            "bandit": bandit.snapshot()["arms"],
            "generation": gen,
        }
        record["timings"].update(online_generate_s=gen.get("generate_s", 0.0), online_user_s=user_s,
                                 sandbox_s=sandbox_s)  # fmt: skip
        self.runtime.use_version(None)

    def run(self, on_run: Callable[[dict], None] | None = None) -> list[dict]:
        runs = []
        total = len(self.cfg.settings) * len(self.cfg.seeds)
        with self._bar(total, "bench") as bar:
            for seed in self.cfg.seeds:  # seed-major: a partial bench still covers every setting
                for setting in self.cfg.settings:
                    bar.set_description(f"bench: {setting.name} seed {seed}")
                    runs.append(self.run_one(setting, seed))
                    if on_run:
                        on_run(runs[-1])
                    bar.update(1)
        return runs


@dataclass
class _Served:
    """What `Runtime.use_version` reads of a version, with every trained adapter served: the bench
    measures each method, including one the pipeline's validation gate would have left out (the
    report says which and why)."""

    version: Any
    policies: list[str]
    weights: dict[str, float]

    @property
    def id(self) -> str:
        return self.version.id

    @property
    def adapters(self) -> dict[str, Path]:
        return self.version.adapters

    @property
    def served(self) -> list[str]:
        return list(self.policies)

    @property
    def mixture_weights(self) -> dict[str, float]:
        return dict(self.weights)


def _explain(user, ctx: dict, response: str):
    """`User.explain` when the user has it; a plain `edit` otherwise (users from `--user module:attr`)."""
    from server.capture.cost import word_cost
    from training.bench.users import EditResult

    if hasattr(user, "explain"):
        return user.explain(ctx, response)
    text = user.edit(ctx, response)
    return EditResult(text, word_cost(response, text), [], [], None)


def _seeded(pcfg, seed: int):
    """The pipeline config with every learner's seed set to the run's."""
    import copy

    out = copy.deepcopy(pcfg)
    for name in ("sup", "pref", "early", "cost"):
        sub = getattr(out, name, None)
        if sub is not None and hasattr(sub, "seed"):
            setattr(out, name, replace(sub, seed=seed))
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "setting"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
