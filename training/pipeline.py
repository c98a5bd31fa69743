"""One training run, top to bottom: edits → filter → split → learners → validation → version → gate.

1. Load the settled edits from the store (read-only), newest `max_edits` if set.
2. Filter the ones that would teach the wrong thing (`training.data`), split by time.
3. Train the enabled learners, each as a LoRA adapter saved straight into the new version's hidden
   folder: SUP, then PREF (from the SUP adapter), Early, and COST where `training/cost.py` exists.
   A learner with too few edits is skipped with its reason; the others still run.
4. Validate every arm and the base model on the validation edits (`training.evaluate`): log-loss, cost
   of greedy suggestions, degeneration. Fit the Mixture where `training/mixture.py` exists. Score the
   active version's best policy on the same edits, for a fair gate.
5. Write the version (`server.versions`: atomic, complete or absent) and activate it if it passes the
   gate.

Optional learners, written as their own modules (imported only when present):

- `training.cost.train_cost(model_dir, train_edits, val_edits, out_dir, config=CostConfig, progress=fn)
  -> Path`: trains the COST policy, writing `adapter/` (peft), `cost_model/` and `cost_report.json`
  into `out_dir` (returned); `progress` receives dicts, those with `step` and `steps` count policy
  steps. Raises `training.data.TooFewEdits` when it cannot train.
- `training.mixture.fit_mixture_weights(logprobs) -> dict[str, float]`: `logprobs[policy][i]` is the
  list of per-token log-probabilities of validation edit i's y′ (then end-of-text) under that policy
  ("base": the base model); returns convex weights of the token-level mixture, whose greedy
  suggestions `training.mixture.MixtureDecoder(peft_model, names, weights)` decodes.

Only the main process evaluates and writes (under `accelerate launch`, the others take part in training).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from server import versions
from training import data
from training.early import EarlyConfig
from training.evaluate import EvalConfig, PolicyScore, eos_ids, evaluate_policy, judge
from training.pref import PrefConfig
from training.progress import Progress
from training.sup import SupConfig

log = logging.getLogger(__name__)

CORE_LEARNERS = ("sup", "pref", "early")
OPTIONAL_LEARNERS = {"cost": "training.cost", "mixture": "training.mixture"}
ALL_LEARNERS = CORE_LEARNERS + tuple(OPTIONAL_LEARNERS)


class TrainerBusy(RuntimeError):
    """Another training run holds the lock."""


class NothingToTrain(RuntimeError):
    """No learner could train (too few edits): the message says what each needs."""


def _optional_config(learner: str, name: str):
    """The config dataclass of an optional learner, or None when its module is missing."""
    if not _module_exists(OPTIONAL_LEARNERS[learner]):
        return None
    return getattr(importlib.import_module(OPTIONAL_LEARNERS[learner]), name)()


def available_learners() -> list[str]:
    """The core learners, plus COST and Mixture where their modules exist."""
    return list(CORE_LEARNERS) + [name for name, mod in OPTIONAL_LEARNERS.items() if _module_exists(mod)]


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class PipelineConfig:
    learners: list[str] = field(default_factory=available_learners)
    max_edits: int | None = None  # train on the newest this many edits only
    warm_start: bool = False  # continue from the active version's adapters (same base model)
    # With warm_start: train only on the edits the active version did not train on (validation is
    # still the newest edits), so that a retrain after a few new edits costs what those edits cost.
    incremental: bool = False
    incremental_max_val: int = 16  # an incremental run validates on the newest this many edits only
    # Passes over the new edits in an incremental run, at most (a full run uses each learner's own
    # `epochs`): the adapters it continues have seen the rest, and a second pass over a handful of
    # new edits is what fits them too closely.
    incremental_epochs: float = 1.0
    activate: bool = True  # activate the new version when it passes the gate
    force: bool = False  # activate even when the gate refuses
    tolerance: float = 0.0  # the gate lets a version this much worse (validation cost) through
    compare_active: bool = True  # score the active version on the new validation edits
    # Mixture components the fit weighs below this are dropped and the rest refitted: each component
    # is a decoding row at every step, in validation and in serving (one row 46 ms a step, two 75,
    # four 100 on 2 cores; benchmarks/decode_rows.py), and one at a few percent seldom moves the argmax.
    mixture_min_weight: float = 0.03
    threads: int = 0  # torch CPU threads; 0: every core while the machine is otherwise idle, one fewer
    # for each core something else keeps busy (training.threads)
    keep_versions: int = 5  # older versions are deleted after a run (never the active one)
    filter: data.FilterConfig = field(default_factory=data.FilterConfig)
    split: data.SplitConfig = field(default_factory=data.SplitConfig)
    sup: SupConfig = field(default_factory=SupConfig)
    pref: PrefConfig = field(default_factory=PrefConfig)
    early: EarlyConfig = field(default_factory=EarlyConfig)
    cost: object = field(default_factory=lambda: _optional_config("cost", "CostConfig"))  # None without COST
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        unknown = [name for name in self.learners if name not in ALL_LEARNERS]
        if unknown:
            raise ValueError(f"unknown learners {unknown}; choose from {', '.join(ALL_LEARNERS)}")


@dataclass
class RunResult:
    version: str | None = None
    activated: bool = False
    reason: str = ""
    counts: dict = field(default_factory=dict)  # edits loaded / kept / train / validation
    filter: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)  # learner -> {steps, seconds, examples, ...}
    skipped: dict = field(default_factory=dict)  # learner -> why it did not train
    validation: dict = field(default_factory=dict)  # policy -> figures (validation.json)
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"type": "result", **asdict(self)}


# --- the run ------------------------------------------------------------------------------------------


def lower_priority() -> None:
    """Training yields the CPU to the editor and the language server."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)


@contextlib.contextmanager
def training_lock(root: Path):
    """One training run at a time per data folder (POSIX; elsewhere best effort)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fh = open(root / ".train.lock", "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise TrainerBusy("Another training run is in progress; try again when it has finished.") from exc
        yield
    finally:
        fh.close()


def run(
    model_dir: Path,
    db_path: Path,
    cfg: PipelineConfig | None = None,
    *,
    progress: Progress | None = None,
    versions_root: Path | None = None,
    dry_run: bool = False,
) -> RunResult:
    """Train, validate, write and (maybe) activate a new model version. See the module docstring."""
    from accelerate import PartialState

    from training import threads

    cfg = cfg or PipelineConfig()
    progress = progress or Progress("none")
    root = versions.versions_root(versions_root)
    main = PartialState().is_main_process
    lock = training_lock(root) if main else contextlib.nullcontext()
    with threads.governed(threads.ThreadConfig(cfg.threads)), lock:
        return _run(Path(model_dir).resolve(), Path(db_path), cfg, progress, root, dry_run, main)


def _run(model_dir, db_path, cfg, progress, root, dry_run, main) -> RunResult:
    result = RunResult(dry_run=dry_run)
    clock = time.perf_counter()

    progress.emit("load", message=f"Loading edits from {db_path}")
    edits = data.load_edits(db_path, limit=cfg.max_edits)
    progress.emit("filter", message=f"Filtering {len(edits)} edits")
    kept, report = data.filter_edits(edits, cfg.filter)
    train, val = data.split_edits(kept, cfg.split)
    result.filter = report.as_dict()
    result.counts = {"loaded": len(edits), "kept": len(kept), "train": len(train), "validation": len(val)}
    progress.emit("split", message=f"{report}; {len(train)} to train on, {len(val)} to validate", **result.counts)
    result.seconds["data"] = time.perf_counter() - clock

    current = versions.active(root)
    same_base = current is not None and Path(current.base_model).resolve() == model_dir
    if cfg.incremental and cfg.warm_start and same_base:
        seen = set((current.read_json("edits.json") or {}).get("train", []))
        train = [e for e in train if e.id not in seen]
        if cfg.incremental_max_val > 0:
            val = val[-cfg.incremental_max_val :]
        # Early keeps the λ and β the full run chose on many more edits, rather than a grid of runs.
        chosen = (((current.read_json("train_config.json") or {}).get("runs") or {}).get("early") or {}).get("metrics")
        if chosen and chosen.get("lambda") is not None and chosen.get("beta") is not None:
            cfg = replace(cfg, early=replace(cfg.early, lambdas=[chosen["lambda"]], betas=[chosen["beta"]]))
        cfg = _incremental_learners(cfg)
        result.counts.update(train=len(train), validation=len(val), seen_before=len(seen))
        progress.emit("split", message=f"Incremental: {len(train)} edits the active version has not trained on",
                      **result.counts)  # fmt: skip

    plan = _plan(cfg, train, val)
    result.skipped = {k: v for k, v in plan.items() if v}
    runnable = [k for k in cfg.learners if not plan.get(k)]
    if dry_run:
        result.reason = "dry run: " + (f"would train {', '.join(runnable)}" if runnable else "nothing to train")
        progress.emit("done", message=result.reason, learners=runnable)
        return result
    if not any(k in runnable for k in ("sup", "pref", "early", "cost")):
        reasons = list(dict.fromkeys(v.rstrip(".") for v in plan.values() if v))
        raise NothingToTrain(f"Nothing to train yet: {report}. " + "; ".join(reasons) + ".")

    writer = versions.VersionWriter(model_dir, root) if main else None
    scratch = tempfile.TemporaryDirectory(prefix="redline-train-")
    try:
        out = (lambda p: writer.adapter_dir(p)) if main else (lambda p: Path(scratch.name) / p)
        adapters = _train_all(model_dir, cfg, train, val, runnable, out, current if same_base else None,
                              progress, result)  # fmt: skip
        if not main:
            return result
        if not adapters:
            raise NothingToTrain("Every learner failed or was skipped: " + "; ".join(result.skipped.values()))

        clock = time.perf_counter()
        scores, weights, comparison = _validate(model_dir, cfg, val, adapters, current if same_base else None,
                                                "mixture" in runnable, progress, result)  # fmt: skip
        result.validation = {name: s.as_json() for name, s in scores.items()}
        result.seconds["validate"] = time.perf_counter() - clock

        progress.emit("write", message="Writing the model version")
        writer.write_json("validation.json", result.validation)
        writer.write_json("train_config.json", _config_record(cfg, model_dir, result))
        writer.write_json(
            "edits.json",
            {
                "train": [e.id for e in train],
                "validation": [e.id for e in val],
                "filter": {**report.as_dict(), "dropped_ids": report.dropped_ids},
            },
        )
        if weights:
            writer.write_json("mixture.json", {"weights": weights})
        if comparison:
            writer.write_json("comparison.json", comparison)
        version = writer.commit(
            trained_at=time.time(),
            learners=sorted(adapters),
            served=[p for p, v in result.validation.items() if v["served"]],
            counts=result.counts,
        )
        result.version = version.id

        if cfg.activate:
            decision = versions.activate(version.id, force=cfg.force, tolerance=cfg.tolerance, root=root)
            result.activated, result.reason = decision.activated, decision.reason
        else:
            result.reason = "written, not activated (activation turned off)"
        if cfg.keep_versions > 0:
            versions.prune(cfg.keep_versions, root)
        progress.emit("gate", message=("Activated: " if result.activated else "Not activated: ") + result.reason,
                      version=version.id, activated=result.activated)  # fmt: skip
        progress.emit("done", message=f"Model version {version.id} written", version=version.id,
                      activated=result.activated, reason=result.reason)  # fmt: skip
        return result
    finally:
        if writer is not None and writer.committed is None:
            writer.__exit__(None, None, None)
        scratch.cleanup()


def _incremental_learners(cfg: PipelineConfig) -> PipelineConfig:
    """The learners' settings for an incremental run: at most `incremental_epochs` passes, and COST's
    before/after greedy diagnostic left out (validation measures COST's policy either way)."""
    def once(c):
        return replace(c, epochs=min(c.epochs, cfg.incremental_epochs)) if c.max_steps <= 0 else c

    cost = cfg.cost
    if cost is not None:
        cost = replace(once(cost), eval_prompts=0)
    return replace(cfg, sup=once(cfg.sup), pref=once(cfg.pref), early=once(cfg.early), cost=cost)


def _plan(cfg: PipelineConfig, train: list[data.Edit], val: list[data.Edit]) -> dict[str, str]:
    """learner -> why it cannot run ("" when it can)."""
    plan: dict[str, str] = {}
    try:
        data.require("validation", max(cfg.split.min_val, 1), len(val), "the newest edits are held out to validate")
        no_val = ""
    except data.TooFewEdits as exc:
        no_val = str(exc)
    for name in cfg.learners:
        if name in OPTIONAL_LEARNERS and not _module_exists(OPTIONAL_LEARNERS[name]):
            plan[name] = f"{name.upper()} is not available ({OPTIONAL_LEARNERS[name]} is missing)"
            continue
        try:
            if name == "sup":
                data.require("sup", cfg.sup.min_edits, len(train))
            elif name == "pref":
                have = len(train) if cfg.pref.include_ties else data.pair_count(train)
                data.require("pref", cfg.pref.min_edits, have, "edits where y′ differs from y")
            elif name == "early":
                data.require("early", cfg.early.min_edits, len(train))
            elif name == "cost" and cfg.cost is not None:
                data.require("cost", getattr(cfg.cost, "min_edits", 1), len(train))
            plan[name] = no_val
        except data.TooFewEdits as exc:
            plan[name] = no_val or str(exc)
    return plan


def _train_all(model_dir, cfg, train, val, runnable, out, warm, progress, result) -> dict[str, Path]:
    from training.early import train_early
    from training.pref import train_pref
    from training.sup import train_sup

    adapters: dict[str, Path] = {}

    def warm_from(policy: str) -> Path | None:
        if cfg.warm_start and warm is not None and policy in warm.adapters:
            return warm.adapters[policy]
        return None

    for name in [k for k in ("sup", "pref", "early", "cost") if k in runnable]:
        step = progress.steps("train", name)
        progress.emit("train", name, step=0, of=None, message=f"Training {name.upper()}")
        clock = time.perf_counter()
        try:
            if name == "sup":
                r = train_sup(model_dir, train, out("sup"), cfg.sup, init_adapter=warm_from("sup"), progress=step)
            elif name == "pref":
                init = warm_from("pref") or (adapters.get("sup") if cfg.pref.init_from_sup else None)
                r = train_pref(model_dir, train, out("pref"), cfg.pref, init_adapter=init, progress=step)
            elif name == "early":
                r = train_early(model_dir, train, val, out("early"), cfg.early, init_adapter=warm_from("early"),
                                progress=step)  # fmt: skip
            else:
                r = _train_cost(model_dir, cfg, train, val, out("cost"), step, progress)
            adapters[name] = out(name)
            result.trained[name] = r.as_dict() if hasattr(r, "as_dict") else {"adapter_dir": str(r)}
            result.trained[name].pop("adapter_dir", None)
        except data.TooFewEdits as exc:
            result.skipped[name] = str(exc)
        except Exception as exc:  # one learner failing must not cost the others their run
            traceback.print_exc(file=sys.stderr)
            result.skipped[name] = f"{name.upper()} failed: {type(exc).__name__}: {exc}"
            if out(name).exists():
                shutil.rmtree(out(name), ignore_errors=True)
        result.seconds[f"train_{name}"] = time.perf_counter() - clock
    return adapters


def _train_cost(model_dir, cfg, train, val, out_dir: Path, step, progress: Progress):
    """COST through `training.cost.train_cost(model_dir, train, val, out_dir, config, progress)`, which
    writes `adapter/` (peft), `cost_model/` and `cost_report.json` into its folder; the adapter goes to
    `out_dir`, the cost model and report next to the adapters (`cost_model/`, `cost_report.json`)."""
    mod = importlib.import_module(OPTIONAL_LEARNERS["cost"])

    def report(event) -> None:
        if isinstance(event, dict) and event.get("step") is not None and event.get("steps"):
            step(int(event["step"]), int(event["steps"]))
        elif isinstance(event, dict):
            progress.emit("train", "cost", message=f"Training COST: {event.get('stage', '')}")

    with tempfile.TemporaryDirectory(prefix="redline-cost-") as work:
        produced = Path(mod.train_cost(model_dir, train, val, Path(work), config=cfg.cost, progress=report))
        adapter = produced / "adapter" if (produced / "adapter").is_dir() else produced
        if not (adapter / "adapter_config.json").is_file():
            raise RuntimeError(f"train_cost wrote no peft adapter in {produced}")
        shutil.copytree(adapter, out_dir)
        version_dir = Path(out_dir).parents[1]
        folder = produced.parent if adapter == produced else produced  # train_cost returns <folder>/adapter
        for extra in ("cost_model", "cost_report.json"):
            src = folder / extra
            if src.is_dir():
                shutil.copytree(src, version_dir / extra)
            elif src.is_file():
                shutil.copy2(src, version_dir / extra)
    return _Produced(Path(out_dir))


@dataclass
class _Produced:
    adapter_dir: Path

    def as_dict(self) -> dict:
        return {"adapter_dir": str(self.adapter_dir)}


def _validate(model_dir, cfg, val, adapters: dict[str, Path], current, mixture: bool, progress, result):
    """Score the base model and each adapter on `val` and judge them; fit and score the Mixture over
    the policies that passed; score the active version's best policy on the same edits (for the gate).
    Returns (scores, mixture weights or {}, comparison or None).

    Every policy is validated side by side on the server's lean decoder (`training.lean_validation`)
    when it runs the model and its adapters; otherwise one after another through peft."""
    from training.lora import device, load_base

    model, tokenizer = load_base(model_dir)
    model.config.use_cache = True
    model.to(device())
    previous: dict[str, Path] = {}  # the active version's adapters, loaded as prev_<policy>
    prev_best = current.best() if current is not None and cfg.compare_active else None
    if prev_best is not None:
        wanted = list(current.mixture_weights) if prev_best[0] == "mixture" else [prev_best[0]]
        wanted = [p for p in wanted if p != versions.BASE]
        previous = {f"prev_{p}": current.adapters[p] for p in wanted if p in current.adapters}
        if len(previous) != len(wanted):
            previous, prev_best = {}, None
    to_load = {**adapters, **previous}
    backend = _LeanBackend.build(model, tokenizer, val, to_load, cfg, progress) or _PeftBackend(
        model, tokenizer, val, to_load, cfg, progress, extra=(1 if mixture else 0) + (1 if prev_best and prev_best[0] == "mixture" else 0))
    scores = backend.score()
    prev_scores = {n.removeprefix("prev_"): scores.pop(n) for n in previous}
    judge(scores, cfg.eval)

    # The Mixtures to decode: this run's (fitted on this run's scores) and the active version's when
    # that is its best policy, with each component named as it was loaded.
    weights: dict[str, float] = {}
    mixtures: dict[str, tuple[dict[str, float], dict[str, PolicyScore], dict[str, str]]] = {}
    if mixture:
        weights = _fit_mixture(scores, result, cfg.mixture_min_weight)
        if weights:
            mixtures["mixture"] = (weights, scores, {})
    if prev_best is not None and prev_best[0] == "mixture":
        rename = {p: (p if p == versions.BASE else f"prev_{p}") for p in current.mixture_weights}
        mixtures["prev_mixture"] = (current.mixture_weights, {**prev_scores, versions.BASE: scores["base"]}, rename)
    mixed = backend.mixtures(mixtures) if mixtures else {}
    if "mixture" in mixed:
        # Judged, ranked and warm-started on edits its weights were not fitted on (held_out_mixture_nll).
        nll, tokens = held_out_mixture_nll(scores, cfg.mixture_min_weight)
        scores["mixture"] = replace(mixed["mixture"], nll=nll, tokens=tokens)
        judge(scores, cfg.eval)

    comparison = None
    if prev_best is not None:
        policy = prev_best[0]
        s = mixed["prev_mixture"] if policy == "mixture" else prev_scores[policy]
        comparison = {"against": current.id, "policy": policy, "cost": s.cost, "capped_cost": s.capped_cost,
                      "nll": s.nll, "n": s.n}  # fmt: skip
    progress.emit("evaluate", None, message="Validation done")
    return scores, weights, comparison


class _LeanBackend:
    """Validation on the lean decoder: all policies side by side, one edit at a time."""

    def __init__(self, weights, policies, tokenizer, val, stops, cfg, progress) -> None:
        self.weights, self.policies, self.tokenizer, self.stops = weights, policies, tokenizer, stops
        self.val, self.cfg, self.progress = val, cfg, progress

    @classmethod
    def build(cls, model, tokenizer, val, to_load: dict[str, Path], cfg, progress):
        """The backend, or None (with the reason logged) when the lean decoder cannot run it."""
        from server import fast_decoder
        from server.lora import AdapterError
        from training import lean_validation

        reason = lean_validation.supported(model)
        if reason is None:
            weights = fast_decoder.Weights(model)
            try:
                policies = {versions.BASE: None, **lean_validation.load_policies(weights, to_load)}
            except AdapterError as exc:
                reason = str(exc)
        if reason is not None:
            log.info("validating one policy at a time through peft: %s", reason)
            return None
        return cls(weights, policies, tokenizer, val, eos_ids(tokenizer, model), cfg, progress)

    def score(self) -> dict[str, PolicyScore]:
        from training import lean_validation
        from training.evaluate import policy_score

        total = len(self.policies) - 1

        def report(done: int, of: int) -> None:
            self.progress.emit("evaluate", None, step=done, of=of,
                               message=f"Validating the base model and {total} polic{'y' if total == 1 else 'ies'} "
                                       f"side by side: edit {done} of {of}")  # fmt: skip

        report(0, len(self.val))
        results = lean_validation.score_and_generate(self.weights, self.policies, self.tokenizer, self.val,
                                                     self.stops, self.cfg.sup.lengths, self.cfg.eval, report)  # fmt: skip
        return {name: policy_score(name, self.val, lp, gens) for name, (lp, gens) in results.items()}

    def mixtures(self, mixtures) -> dict[str, PolicyScore]:
        from training import lean_validation
        from training.evaluate import mixture_nll, policy_score

        def report(done: int, of: int) -> None:
            self.progress.emit("mixture", step=done, of=of, message=f"Validating the Mixture: edit {done} of {of}")

        plans = {name: {rename.get(p, p): a for p, a in w.items()} for name, (w, _, rename) in mixtures.items()}
        gens = lean_validation.generate_mixtures(self.weights, plans, self.policies, self.tokenizer, self.val,
                                                 self.stops, self.cfg.sup.lengths, self.cfg.eval, report)  # fmt: skip
        return {name: policy_score("mixture", self.val, None, gens[name], nll=mixture_nll(w, parts))
                for name, (w, parts, _) in mixtures.items()}  # fmt: skip


class _PeftBackend:
    """Validation through peft: one policy after another, each adapter set in turn."""

    def __init__(self, model, tokenizer, val, to_load: dict[str, Path], cfg, progress, extra: int) -> None:
        from peft import PeftModel

        names = list(to_load)
        peft = PeftModel.from_pretrained(model, str(to_load[names[0]]), adapter_name=names[0])
        for name in names[1:]:
            peft.load_adapter(str(to_load[name]), adapter_name=name)
        peft.eval()
        self.peft, self.tokenizer, self.names, self.cfg, self.progress = peft, tokenizer, names, cfg, progress
        self.val = val
        self.total = len(names) + 1 + extra

    def score(self) -> dict[str, PolicyScore]:
        lengths, ecfg = self.cfg.sup.lengths, self.cfg.eval
        scores: dict[str, PolicyScore] = {}
        self.progress.emit("evaluate", "base", step=0, of=self.total)
        with self.peft.disable_adapter():
            scores["base"] = evaluate_policy(self.peft, self.tokenizer, self.val, policy="base", lengths=lengths,
                                             config=ecfg)  # fmt: skip
        for i, name in enumerate(self.names, start=1):
            prev = name.startswith("prev_")
            self.progress.emit("evaluate", name.removeprefix("prev_"), step=i, of=self.total,
                               message=f"Validating {'the active version' + chr(39) + 's ' if prev else ''}"
                                       f"{name.removeprefix('prev_').upper()}")  # fmt: skip
            self.peft.set_adapter(name)
            scores[name] = evaluate_policy(self.peft, self.tokenizer, self.val, policy=name, lengths=lengths,
                                           config=ecfg)  # fmt: skip
        return scores

    def mixtures(self, mixtures) -> dict[str, PolicyScore]:
        self.progress.emit("mixture", step=len(self.names) + 1, of=self.total)
        return {name: _score_mixture(self.peft, self.tokenizer, self.val, w, parts, rename, self.cfg)
                for name, (w, parts, rename) in mixtures.items()}  # fmt: skip


def _fit_mixture(scores: dict[str, PolicyScore], result: RunResult, min_weight: float = 0.0) -> dict[str, float]:
    """Mixture weights over the policies that passed validation (the base model included), components
    weighed below `min_weight` dropped and the rest refitted; {} and a reason in `result.skipped` when
    there is nothing to mix or the fit fails."""
    parts = {name: s for name, s in scores.items() if s.served}
    if len(parts) < 2:
        result.skipped["mixture"] = "MIXTURE needs at least one trained policy that passed validation"
        return {}
    try:
        mod = importlib.import_module(OPTIONAL_LEARNERS["mixture"])
        weights, dropped = _pruned_weights(mod, parts, min_weight)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result.skipped["mixture"] = f"MIXTURE failed: {type(exc).__name__}: {exc}"
        return {}
    result.trained["mixture"] = {"weights": weights, **({"dropped": dropped} if dropped else {})}
    return weights


def _pruned_weights(mod, parts: dict[str, PolicyScore], min_weight: float) -> tuple[dict[str, float], dict[str, float]]:
    """(weights, the components dropped for weighing below `min_weight` with their weights)."""
    weights = _mixture_weights(mod, parts)
    small = {k: v for k, v in weights.items() if v < min_weight}
    if not small or len(small) == len(weights):
        return weights, {}
    kept = {k: s for k, s in parts.items() if k not in small}
    return (_mixture_weights(mod, kept) if len(kept) > 1 else {next(iter(kept)): 1.0}), small


def _mixture_weights(mod, parts: dict[str, PolicyScore]) -> dict[str, float]:
    raw = mod.fit_mixture_weights({name: s.token_logprobs for name, s in parts.items()})
    weights = {k: float(v) for k, v in dict(raw).items() if k in parts and float(v) > 0}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"fit_mixture_weights returned no positive weight: {raw}")
    return {k: v / total for k, v in weights.items()}


def held_out_mixture_nll(scores: dict[str, PolicyScore], min_weight: float = 0.0, folds: int = 5
                         ) -> tuple[float, int]:  # fmt: skip
    """The Mixture's log-loss of y′ where each validation edit is scored with weights fitted on the
    others (`folds`-fold, edit i in fold i mod folds): (mean per token, tokens).

    The weights are fitted on these very edits, so the Mixture's log-loss on them is at most its best
    component's by construction, and the gate, the version's best policy and the Late ensemble's order
    (all on log-loss) would always rank it first. Scored on edits its weights never saw, it competes
    on the same footing as the single policies. Fewer than 2 edits: the in-sample figure."""
    from training.evaluate import mixture_nll

    mod = importlib.import_module(OPTIONAL_LEARNERS["mixture"])
    parts = {name: s for name, s in scores.items() if s.served}
    n = next(iter(parts.values())).n if parts else 0
    if n < 2 or len(parts) < 2:
        return mixture_nll(_mixture_weights(mod, parts), parts)
    k = min(folds, n)
    total, tokens = 0.0, 0
    for fold in range(k):
        train = [i for i in range(n) if i % k != fold]
        test = [i for i in range(n) if i % k == fold]
        weights, _ = _pruned_weights(mod, {name: _subset(s, train) for name, s in parts.items()}, min_weight)
        nll, count = mixture_nll(weights, {name: _subset(s, test) for name, s in parts.items()})
        if count:
            total, tokens = total + nll * count, tokens + count
    return (total / tokens if tokens else math.nan), tokens


def _subset(s: PolicyScore, edits: list[int]) -> PolicyScore:
    return replace(s, n=len(edits), token_logprobs=[s.token_logprobs[i] for i in edits])


def _score_mixture(peft, tokenizer, val, weights, parts, rename, cfg) -> PolicyScore:
    """The token-level Mixture's validation score, decoded by training.mixture's decoder. `rename` maps
    a component to the adapter name it is loaded under (default: its own name)."""
    from training.evaluate import evaluate_mixture

    mod = importlib.import_module(OPTIONAL_LEARNERS["mixture"])
    names = list(weights)
    decoder = mod.MixtureDecoder(peft, [rename.get(n, n) for n in names], [weights[n] for n in names])
    stops = eos_ids(tokenizer, peft)
    return evaluate_mixture(
        lambda prompt, budget: decoder.generate(prompt, budget, stops),
        peft, tokenizer, val, weights, parts, lengths=cfg.sup.lengths, config=cfg.eval,
    )  # fmt: skip


def _config_record(cfg: PipelineConfig, model_dir: Path, result: RunResult) -> dict:
    import peft
    import torch
    import transformers
    import trl

    from training.lora import use_bf16

    return {
        "base_model": str(model_dir),
        "configs": asdict(cfg),
        "runs": result.trained,
        "skipped": result.skipped,
        "seconds": result.seconds,
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "trl": trl.__version__,
            "device": str(_device_name()),
            "bf16": use_bf16(),
            "python": sys.version.split()[0],
        },
    }


def _device_name() -> str:
    from training.lora import device

    return str(device())
