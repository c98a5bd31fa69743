"""Early ensemble: one adapter trained on ℓ_PREF + λ·ℓ_SUP, λ and β chosen by validation log-loss.

Each (λ, β) of a small grid trains one adapter (DPO on y′ ≻ y plus λ times the SFT loss on y′, trl's
`loss_type=["sigmoid", "sft"]`) and scores the mean negative log-likelihood of the validation edits'
y′; the adapter with the lowest wins. Edits with y′ == y stay in (`include_ties`): they carry no
preference, but the SUP term learns from them.

Successive halving, so that the grid does not multiply the run: every point starts the run it would
have had on all the training edits, on a random part of them (`probe`, a third by default), and stops
there, its learning rate where that run's linear decay has brought it; the validation log-loss there
chooses; only the winner goes on, over the rest of the edits, with the rest of the same schedule. The
winner has then seen every edit once (per epoch) under the schedule of a full run, and a grid of two
points costs 1⅓ runs instead of 2. With one point, or too few edits to split, each point trains on
everything as one run.

Choosing λ, β on the validation edits and then gating on the same edits is optimistic by a little;
with one user's handful of edits there is no third split to spare.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from training import data
from training.lora import StepFn, TrainResult
from training.pref import PrefConfig


@dataclass
class EarlyConfig(PrefConfig):
    learning_rate: float = 1e-4
    epochs: float = 1.0
    lambdas: list[float] = field(default_factory=lambda: [0.5, 1.0])  # weights of ℓ_SUP to try
    betas: list[float] = field(default_factory=lambda: [0.1])  # DPO β values to try
    init_from_sup: bool = False  # one policy trained on both losses from the base model
    include_ties: bool = True
    min_edits: int = 8
    # Share of the training edits every grid point trains on before the choice; the winner trains on
    # the rest. 0 (or 1): every point trains on everything.
    probe: float = 1 / 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lambdas or not self.betas:
            raise ValueError("the λ and β grids need at least one value each")
        if not 0 <= self.probe <= 1:
            raise ValueError("probe must be between 0 and 1")


def probe_split(edits: list[data.Edit], cfg: EarlyConfig) -> tuple[list[data.Edit], list[data.Edit]] | None:
    """(probe edits, the rest) — a seeded random split — or None when the grid is not probed: one
    point, no probe share, or too few edits for a step on each side."""
    points = len(cfg.lambdas) * len(cfg.betas)
    per_step = cfg.batch_size * cfg.grad_accum
    n = round(cfg.probe * len(edits))
    if points < 2 or not 0 < cfg.probe < 1 or n < per_step or len(edits) - n < per_step:
        return None
    order = list(range(len(edits)))
    random.Random(cfg.seed).shuffle(order)
    return [edits[i] for i in sorted(order[:n])], [edits[i] for i in sorted(order[n:])]


def _stage_steps(cfg: EarlyConfig, n_edits: int, processes: int | None = None) -> int:
    """Optimizer steps of one stage on `n_edits` edits, as transformers counts them: each of
    `processes` (accelerate's, by default) takes its own micro-batches."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    if processes is None:
        from accelerate import PartialState

        processes = PartialState().num_processes
    per_process = math.ceil(n_edits / (cfg.batch_size * max(1, processes)))
    return max(1, math.ceil(per_process / cfg.grad_accum * cfg.epochs))


def probe_schedule(cfg: EarlyConfig, n_train: int, n_probe: int) -> tuple[int, int, float]:
    """(steps of the whole run, steps of the probe, learning rate the rest starts at). Under a linear
    decay from `learning_rate` to 0 over the whole run, the probe's share of the steps is its share of
    the edits."""
    total = _stage_steps(cfg, n_train)
    if n_probe >= n_train or total < 2:
        return total, total, cfg.learning_rate
    probe = max(1, min(total - 1, round(total * n_probe / n_train)))
    return total, probe, cfg.learning_rate * (1 - probe / total)


def train_early(
    model_dir: Path,
    train_edits: list[data.Edit],
    val_edits: list[data.Edit],
    out_dir: Path,
    cfg: EarlyConfig | None = None,
    *,
    init_adapter: Path | None = None,
    progress: StepFn | None = None,
) -> TrainResult:
    """Train the (λ, β) grid (probing it on part of the edits, see the module docstring), keep the point
    whose validation log-loss is lowest, save it in `out_dir`. `metrics` holds the chosen λ, β, the
    final adapter's validation log-loss and the whole grid (each point's log-loss where the choice was
    made); a grid of one point is not scored (None)."""
    from training.evaluate import completion_logprobs, mean_nll
    from training.lora import run_trainer, scratch_dir
    from training.pref import dpo_trainer

    cfg = cfg or EarlyConfig()
    data.require("early", cfg.min_edits, len(train_edits))
    data.require("early", 1, len(val_edits), "validation edits to choose λ and β")
    grid = [(lam, beta) for beta in cfg.betas for lam in cfg.lambdas]
    # A probe starts from the base model (its reference): a warm start trains the grid as before.
    split = probe_split(train_edits, cfg) if init_adapter is None else None
    probe_edits, rest = split if split else (train_edits, [])
    total, probe_steps, rest_lr = probe_schedule(cfg, len(train_edits), len(probe_edits))
    # The probe runs the whole run's schedule and stops at `probe_steps`; the rest starts where it
    # left the learning rate and decays it to zero.
    probe_cfg = replace(cfg, max_steps=total) if split else cfg
    rest_cfg = replace(cfg, max_steps=max(1, total - probe_steps), learning_rate=rest_lr)
    total_progress = len(grid) * probe_steps + (total - probe_steps if split else 0)
    results: list[dict] = []
    best: tuple[float | None, Path, TrainResult, dict] | None = None
    seconds = 0.0

    def nll_of(trainer, point) -> float:
        model = trainer.accelerator.unwrap_model(trainer.model)
        return mean_nll(completion_logprobs(model, trainer.processing_class, val_edits, point.lengths))[0]

    with tempfile.TemporaryDirectory(prefix="redline-early-") as keep:
        for i, (lam, beta) in enumerate(grid):
            point = replace(probe_cfg, sft_weight=lam, beta=beta)

            def step(done: int, of: int, i: int = i) -> None:
                if progress:
                    progress(i * probe_steps + min(done, probe_steps), total_progress)

            with scratch_dir("early") as scratch:
                trainer, n = dpo_trainer(model_dir, probe_edits, point, Path(scratch), init_adapter)
                adapter = Path(keep) / f"point-{i}"
                # every process keeps the points: under accelerate each one goes on from the winner
                result = run_trainer(trainer, step, adapter, n, stop_at=probe_steps if split else None,
                                     every_process=True)  # fmt: skip
                # one point has nothing to be chosen against (validation scores the adapter later)
                nll = nll_of(trainer, point) if len(grid) > 1 else None
                del trainer
            seconds += result.seconds
            row = {"lambda": lam, "beta": beta, "val_nll": nll, "steps": result.steps}
            if split:
                row["edits"] = len(probe_edits)
            results.append(row)
            if best is None or nll < best[0]:
                best = (nll, adapter, result, row)
        nll, adapter, result, row = best
        if split:  # the winner goes on over the rest, its learning rate decaying to zero
            point = replace(rest_cfg, sft_weight=row["lambda"], beta=row["beta"], reference="base")
            done_before = len(grid) * probe_steps

            def step(done: int, of: int) -> None:
                if progress:
                    progress(done_before + done, total_progress)

            with scratch_dir("early") as scratch:
                trainer, n = dpo_trainer(model_dir, rest, point, Path(scratch), adapter)
                adapter = Path(keep) / "winner"
                last = run_trainer(trainer, step, adapter, n, every_process=True)
                nll = nll_of(trainer, point)
                del trainer
            seconds += last.seconds
            result = replace(last, steps=result.steps + last.steps, examples=result.examples + last.examples,
                             losses=result.losses + last.losses)  # fmt: skip
        out_dir = Path(out_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(adapter, out_dir)
    result.adapter_dir = out_dir
    result.seconds = seconds
    result.metrics = {**result.metrics, "lambda": row["lambda"], "beta": row["beta"], "val_nll": nll, "grid": results,
                      "probe_edits": len(probe_edits) if split else None}  # fmt: skip
    return result
