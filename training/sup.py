"""SUP: supervised fine-tuning on the user's edits — maximise log π(y′ | x) with a LoRA adapter.

The loss covers the completion only (y′ and its end-of-text token); the prompt is context. Rows are
tokenized here the way serving tokenizes (`training.encode`), then handed to trl's SFTTrainer already
tokenized. Calibration on this project's 2-core machine (DESIGN.md): r=16 all-linear, lr 3e-4 and about
two epochs took held-out cost from 0.41 to 0.16.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training import data, encode, shared_prompt
from training.lora import LoraTrainConfig, StepFn, TrainResult


@dataclass
class SupConfig(LoraTrainConfig):
    r: int = 16
    alpha: int = 32
    learning_rate: float = 3e-4
    epochs: float = 2.0
    # Four edits per step as two micro-batches of two: four edits' activations at once were the
    # retrain's memory peak (5.4-6.0 GB on real edits; the same step, half the activations).
    batch_size: int = 2
    grad_accum: int = 2
    min_edits: int = 8


def sft_dataset(tokenizer, edits: list[data.Edit], cfg: SupConfig):
    from datasets import Dataset

    rows = data.make_sft_rows(edits)
    return Dataset.from_list([encode.sft_example(tokenizer, r["prompt"], r["completion"], cfg.lengths) for r in rows])


def sft_trainer(model_dir: Path, edits: list[data.Edit], cfg: SupConfig, scratch: Path, init_adapter: Path | None):
    """A ready SFT trainer (LoRA, loss on the completion only) and its dataset size."""
    from trl import SFTConfig, SFTTrainer

    from training.lora import bucket_by_length, load_base, peft_model, trainer_args

    model, tokenizer = load_base(model_dir)
    model = peft_model(model, cfg, init_adapter)
    dataset = sft_dataset(tokenizer, edits, cfg)
    args = trainer_args(
        SFTConfig,
        cfg,
        scratch,
        completion_only_loss=True,
        max_length=None,  # already cut: prompts from the left, completions from the right
        packing=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    # The head projects only the completion's positions, not the prompt's (training.shared_prompt).
    shared_prompt.install(trainer.model.get_base_model(), pairs=False)
    bucket_by_length(trainer)  # micro-batches of rows of about one length: little padding to compute
    return trainer, len(dataset)


def train_sup(
    model_dir: Path,
    train_edits: list[data.Edit],
    out_dir: Path,
    cfg: SupConfig | None = None,
    *,
    init_adapter: Path | None = None,
    progress: StepFn | None = None,
) -> TrainResult:
    """Train a SUP adapter on (x, y′) and save it in `out_dir`. `init_adapter` continues from an
    earlier adapter (incremental retraining) instead of a fresh one."""
    from training.lora import run_trainer, scratch_dir

    cfg = cfg or SupConfig()
    data.require("sup", cfg.min_edits, len(train_edits))
    with scratch_dir("sup") as scratch:
        trainer, n = sft_trainer(model_dir, train_edits, cfg, Path(scratch), init_adapter)
        return run_trainer(trainer, progress, out_dir, n)
