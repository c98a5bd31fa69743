"""What the LoRA learners share: their common config, loading the base model, trainer arguments,
saving adapters, and progress reports from inside trl's training loop.

Nothing here assumes a CPU. trl runs on accelerate, so `accelerate launch -m training train` spreads a
run over GPUs unchanged; bf16 mixed precision is used where the GPU supports it, fp32 elsewhere (bf16 on
a CPU is slower and no smaller for LoRA training).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training import threads
from training.encode import Lengths

#: progress(step, of): called as a learner advances.
StepFn = Callable[[int, int], None]


@dataclass
class LoraTrainConfig:
    """Settings every LoRA learner has. Learners subclass it with their own defaults."""

    r: int = 16  # LoRA rank
    alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"  # every linear layer but the output head
    learning_rate: float = 3e-4
    epochs: float = 2.0  # passes over the training edits
    max_steps: int = -1  # > 0: this many optimizer steps, whatever `epochs` says
    batch_size: int = 4  # edits per step and device
    grad_accum: int = 1
    max_prompt_tokens: int = 384  # prompts keep their last tokens, as serving does
    max_completion_tokens: int = 128
    seed: int = 0
    min_edits: int = 8  # fewer training edits than this: the learner refuses (TooFewEdits)

    @property
    def lengths(self) -> Lengths:
        return Lengths(self.max_prompt_tokens, self.max_completion_tokens)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    seconds: float
    examples: int
    losses: list[float] = field(default_factory=list)  # training loss at each logged step
    metrics: dict = field(default_factory=dict)  # the last logged metrics (DPO margins, accuracies ...)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["adapter_dir"] = str(self.adapter_dir)
        return out


def use_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cpu_threads(threads: int = 0) -> int:
    """Set torch's CPU threads for training: `threads`, or by default one core fewer than the machine
    has (at least one), leaving a core to the editor and the language server. On a busy 2-core
    machine one thread was also six times faster than two (0.28 s against 1.8 s a tiny SFT step):
    two spinning OpenMP threads fight everything else for both cores. No effect on a GPU's speed."""
    import torch

    n = threads if threads > 0 else max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    return n


def device():
    from accelerate import PartialState

    return PartialState().device


def load_base(model_dir: Path):
    """(model, tokenizer) from a local folder, fp32 weights, with a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from server import model_store

    model_store.offline()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    model.config.use_cache = False  # training; evaluation turns it back on
    return model, tokenizer


def peft_model(model, cfg: LoraTrainConfig, init_adapter: Path | None = None):
    """A trainable LoRA model: fresh (zero update) or continuing from `init_adapter`."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import set_seed

    set_seed(cfg.seed)
    if init_adapter is not None:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def trainer_args(config_cls, cfg: LoraTrainConfig, output_dir: Path, **extra):
    """trl config with Redline's choices: no checkpoints, no reporting, no activation (gradient)
    checkpointing (trl turns it on; about 25% slower on a CPU and not needed for a 135M model with
    LoRA), bf16 only where it helps, pinned memory only with a GPU."""
    bf16 = use_bf16()
    return config_cls(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        activation_checkpointing=False,
        dataloader_pin_memory=bf16 or _cuda(),
        bf16=bf16,
        fp16=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **extra,
    )


class LengthBuckets:
    """A training order in which each micro-batch holds rows of about the same length, the
    micro-batches themselves in a random order.

    Why: a micro-batch is padded to its longest row and the padding is computed like any other token.
    On real edits (prompts of 20 to 400 tokens) random pairs were a quarter padding, sorted pairs under
    1% (`benchmarks/retrain.py`'s corpus). Unlike a plain sort by length (transformers'
    `group_by_length` sorts the whole set when it is under 50 batches), the model does not see the
    edits from long to short: the buckets come in a random order, and a little jitter in the sort key
    pairs rows differently from one epoch to the next. A short bucket (fewer rows than a micro-batch)
    goes last, so that every other micro-batch is exactly one bucket."""

    def __init__(self, lengths: list[int], micro_batch: int, seed: int = 0, jitter: float = 0.1) -> None:
        if micro_batch < 1:
            raise ValueError("micro_batch must be at least 1")
        self.lengths, self.micro_batch, self.seed, self.jitter = list(lengths), micro_batch, seed, jitter
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1  # a trainer that never calls set_epoch still gets a new order each epoch
        key = {i: n * (1 + self.jitter * rng.random()) for i, n in enumerate(self.lengths)}
        order = sorted(range(len(self.lengths)), key=key.__getitem__)
        b = self.micro_batch
        buckets = [order[i : i + b] for i in range(0, len(order), b)]
        short = [buckets.pop()] if buckets and len(buckets[-1]) < b else []
        rng.shuffle(buckets)
        for bucket in buckets + short:
            yield from bucket


#: the columns of token ids whose lengths make a row's padded width (SFT rows; DPO rows, whose prompt,
#: chosen and rejected run as one sequence: training.shared_prompt)
_ID_COLUMNS = ("input_ids", "prompt_ids", "chosen_ids", "rejected_ids")


def bucket_by_length(trainer) -> None:
    """Make `trainer` (a transformers Trainer over pre-tokenized rows) draw its micro-batches from
    `LengthBuckets`."""
    dataset = trainer.train_dataset
    columns = [c for c in _ID_COLUMNS if c in dataset.column_names]
    if not columns:
        return
    lengths = [sum(len(row[c]) for c in columns) for row in dataset.select_columns(columns)]
    sampler = LengthBuckets(lengths, trainer.args.per_device_train_batch_size, trainer.args.seed)
    trainer._get_train_sampler = lambda *args, **kwargs: sampler


def make_callback(progress: StepFn | None, losses: list[float], metrics: dict, stop_at: int | None = None):
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if progress:
                progress(0, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            threads.tick()  # between steps: take the idle cores, give them back when the editor works
            if progress:
                progress(state.global_step, state.max_steps)
            if stop_at is not None and state.global_step >= stop_at:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                metrics.clear()
                metrics.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    return _Report()


def run_trainer(trainer, progress: StepFn | None, adapter_dir: Path, examples: int,
                stop_at: int | None = None, every_process: bool = False) -> TrainResult:  # fmt: skip
    """Train, save the adapter (safetensors, the trained adapter only), report. `stop_at` ends the
    run after that many optimizer steps, its learning-rate schedule still the whole run's.
    `every_process`: under `accelerate launch`, every process saves (into a folder of its own) — for
    an adapter that every process goes on training from; otherwise only the main process writes."""
    from transformers.trainer_callback import PrinterCallback

    losses: list[float] = []
    metrics: dict = {}
    trainer.remove_callback(PrinterCallback)  # metrics go to our own progress, not stdout
    trainer.add_callback(make_callback(progress, losses, metrics, stop_at))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    if every_process:
        save_adapter(trainer.accelerator.unwrap_model(trainer.model), adapter_dir)
    else:
        save_adapter(trainer.model, adapter_dir, trainer)
    return TrainResult(
        adapter_dir=Path(adapter_dir),
        steps=int(trainer.state.global_step),
        seconds=seconds,
        examples=examples,
        losses=losses,
        metrics=dict(metrics),
    )


def save_adapter(model, adapter_dir: Path, trainer=None) -> Path:
    adapter_dir = Path(adapter_dir)
    if trainer is not None and not trainer.accelerator.is_main_process:
        return adapter_dir
    if trainer is not None:
        model = trainer.accelerator.unwrap_model(model)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(adapter_dir), selected_adapters=["default"], safe_serialization=True)
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise RuntimeError(f"peft did not write {adapter_dir / 'adapter_model.safetensors'}")
    return adapter_dir


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """Where trl may write its run files; removed afterwards (nothing is checkpointed)."""
    return tempfile.TemporaryDirectory(prefix=f"redline-{prefix}-")
