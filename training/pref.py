"""PREF: preference learning from edits — DPO with y′ ≻ y, as a LoRA adapter.

Only y came from the policy; y′ came from the user, and an edit says the user preferred it. The reference
policy is the one training starts from, held in the same model (no second copy): with a fresh adapter,
the base model with the adapter disabled; when starting from the SUP adapter (`init_from_sup`), a frozen
copy of that adapter, so the KL term keeps PREF near SUP (`reference="base"` measures it from the base
model instead).

Guards. In a calibration run (DESIGN.md) plain DPO at lr 1e-4 over-optimised into degenerate lists. So
PREF runs at a lower learning rate, adds an SFT term on y′ to its loss (`sft_weight`, trl's
`loss_type=["sigmoid", "sft"]` — an RPO-style anchor that keeps the chosen text likely instead of only
pushing the rejected one down), may start from the SUP adapter, and the validation gate leaves a
degenerate PREF out of serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training import data, encode
from training.lora import LoraTrainConfig, StepFn, TrainResult


@dataclass
class PrefConfig(LoraTrainConfig):
    learning_rate: float = 5e-5  # half the rate that degenerated in calibration
    epochs: float = 1.0
    # Four edits per step as two micro-batches of two: DPO runs chosen and rejected through the model
    # together, and four pairs' activations and 49,152-word logits peaked at about 11 GB on code edits.
    batch_size: int = 2
    grad_accum: int = 2
    beta: float = 0.1  # DPO β: larger keeps the policy nearer its reference
    sft_weight: float = 0.2  # λ of the SFT term on y′ (0: plain DPO)
    init_from_sup: bool = True  # start from this run's SUP adapter when there is one
    reference: str = "init"  # "init": the starting policy; "base": the base model (adapter disabled)
    include_ties: bool = False  # also train on y′ == y (only the SFT term learns from those)
    min_edits: int = 8  # edits whose y′ differs from y

    def __post_init__(self) -> None:
        if self.reference not in ("init", "base"):
            raise ValueError(f"reference must be 'init' or 'base', not {self.reference!r}")
        if self.beta <= 0:
            raise ValueError("beta must be positive")
        if self.sft_weight < 0:
            raise ValueError("sft_weight must be >= 0")


def pref_dataset(tokenizer, edits: list[data.Edit], cfg: PrefConfig):
    from datasets import Dataset

    rows = data.make_pref_rows(edits, include_ties=cfg.include_ties)
    return Dataset.from_list(
        [encode.pref_example(tokenizer, r["prompt"], r["chosen"], r["rejected"], cfg.lengths) for r in rows]
    )


def _trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer that takes rows tokenized the way serving tokenizes (see training.encode)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            from peft import PeftModel

            from training import shared_prompt
            from training.lora import bucket_by_length

            # Each pair's prompt runs once for chosen and rejected, and the head projects only the
            # completions: about half a step's work (see training.shared_prompt).
            base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
            shared_prompt.install(base, pairs=True)
            bucket_by_length(self)  # micro-batches of pairs of about one length: little padding

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer


def dpo_trainer(model_dir: Path, edits: list[data.Edit], cfg: PrefConfig, scratch: Path, init_adapter: Path | None):
    """A ready DPO trainer (LoRA; loss = DPO + sft_weight · SFT on y′) and its dataset size."""
    from peft import LoraConfig
    from trl import DPOConfig

    from training.lora import load_base, peft_model, trainer_args

    model, tokenizer = load_base(model_dir)
    dataset = pref_dataset(tokenizer, edits, cfg)
    loss_type, loss_weights = ["sigmoid"], [1.0]
    if cfg.sft_weight > 0:
        loss_type, loss_weights = ["sigmoid", "sft"], [1.0, cfg.sft_weight]
    args = trainer_args(
        DPOConfig,
        cfg,
        scratch,
        beta=cfg.beta,
        loss_type=loss_type,
        loss_weights=loss_weights,
        max_length=None,  # already cut: prompts from the left, completions from the right
        precompute_ref_log_probs=False,
    )
    trainer_cls = _trainer_class()
    if init_adapter is None:
        lora = LoraConfig(
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
            task_type="CAUSAL_LM",
        )  # fmt: skip
        from transformers import set_seed

        set_seed(cfg.seed)
        # trl wraps the model; the reference is the same model with its adapter disabled.
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    else:
        model = peft_model(model, cfg, init_adapter)
        # trl adds a frozen "ref" copy of the starting adapter: the reference is where training starts.
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        if cfg.reference == "base" and "ref" in trainer.model.peft_config:
            trainer.model.delete_adapter("ref")  # reference = adapter disabled = the base model
            trainer.model.set_adapter("default")
    return trainer, len(dataset)


def train_pref(
    model_dir: Path,
    train_edits: list[data.Edit],
    out_dir: Path,
    cfg: PrefConfig | None = None,
    *,
    init_adapter: Path | None = None,
    progress: StepFn | None = None,
) -> TrainResult:
    """Train a PREF adapter on (x, y′ ≻ y) and save it in `out_dir`. `init_adapter` is the adapter to
    start from (this run's SUP adapter, or an earlier PREF for incremental retraining)."""
    from training.lora import run_trainer, scratch_dir

    cfg = cfg or PrefConfig()
    pairs = data.pair_count(train_edits)
    data.require("pref", cfg.min_edits, len(train_edits) if cfg.include_ties else pairs, "edits where y′ differs from y")
    with scratch_dir("pref") as scratch:
        trainer, n = dpo_trainer(model_dir, train_edits, cfg, Path(scratch), init_adapter)
        return run_trainer(trainer, progress, out_dir, n)
