"""Early ensemble: one adapter trained on ℓ_PREF + λ·ℓ_SUP, λ and β chosen by validation log-loss.

Each (λ, β) of a small grid trains one adapter (DPO on y′ ≻ y plus λ times the SFT loss on y′, trl's
`loss_type=["sigmoid", "sft"]`), then scores the mean negative log-likelihood of the validation edits'
y′; the adapter with the lowest wins. Edits with y′ == y stay in (`include_ties`): they carry no
preference, but the SUP term learns from them. Every grid point is a full training run, so the default
grid is tiny (two points) for a CPU; widen it where training is cheap.

Choosing λ, β on the validation edits and then gating on the same edits is optimistic by a little;
with one user's handful of edits there is no third split to spare.
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lambdas or not self.betas:
            raise ValueError("the λ and β grids need at least one value each")


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
    """Train one adapter per (λ, β), keep the one whose validation log-loss is lowest, save it in
    `out_dir`. `metrics` holds the chosen λ, β and the whole grid."""
    from training.evaluate import completion_logprobs, mean_nll
    from training.lora import run_trainer, scratch_dir
    from training.pref import dpo_trainer

    cfg = cfg or EarlyConfig()
    data.require("early", cfg.min_edits, len(train_edits))
    data.require("early", 1, len(val_edits), "validation edits to choose λ and β")
    grid = [(lam, beta) for beta in cfg.betas for lam in cfg.lambdas]
    results: list[dict] = []
    best: tuple[float, Path, TrainResult, dict] | None = None
    seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="redline-early-") as keep:
        for i, (lam, beta) in enumerate(grid):
            point = replace(cfg, sft_weight=lam, beta=beta)

            def step(done: int, of: int, i: int = i) -> None:
                if progress:
                    progress(i * of + done, len(grid) * of)

            with scratch_dir("early") as scratch:
                trainer, n = dpo_trainer(model_dir, train_edits, point, Path(scratch), init_adapter)
                adapter = Path(keep) / f"point-{i}"
                result = run_trainer(trainer, step, adapter, n)
                model = trainer.accelerator.unwrap_model(trainer.model)
                nll, _ = mean_nll(completion_logprobs(model, trainer.processing_class, val_edits, point.lengths))
                del trainer, model
            seconds += result.seconds
            row = {"lambda": lam, "beta": beta, "val_nll": nll, "steps": result.steps}
            results.append(row)
            if best is None or nll < best[0]:
                best = (nll, adapter, result, row)
        nll, adapter, result, row = best
        out_dir = Path(out_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(adapter, out_dir)
    result.adapter_dir = out_dir
    result.seconds = seconds
    result.metrics = {**result.metrics, "lambda": row["lambda"], "beta": row["beta"], "val_nll": nll, "grid": results}
    return result
