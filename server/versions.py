"""Model versions: trained adapters that explain themselves, an `active` pointer, the gate, rollback.

Only the standard library (and psutil) here: the server reads versions without importing the trainer's
libraries, and the trainer writes them through the same module.

Layout, under `<data>/models/versions/`:

    <version-id>/                      e.g. 20260129-013400-250-3f2a
        manifest.json                  written last: id, times, base model, policies, every file's size
        adapters/<policy>/             peft LoRA adapter: adapter_model.safetensors + adapter_config.json
        train_config.json              every config the run used
        edits.json                     ids of the train and validation edits, and the filter report
        validation.json                {policy: {cost, nll, n, degenerate, served, reason, ...}}, "base" included
        comparison.json                (optional) the active version's best policy scored on these edits
        mixture.json                   (optional) {"weights": {policy: α}} of the Mixture ensemble
    .tmp-<version-id>-<pid>/           a version being written (never listed; removed once its writer is dead)
    active.json                        {"version": id or null, "history": [older ids], "updated_at": t}

Crash safety. A version is written into a `.tmp-` folder and renamed into place only after its manifest
is written and synced, so a folder under its final name is always complete (its manifest lists the size
of every file, checked on load). The `active.json` pointer is replaced with `os.replace` after its new
text is synced. A trainer killed at any moment leaves the active version as it was.

The gate. `activate` refuses a candidate whose best served trained policy is worse on validation
than the active version's best — on the log-loss of the users' edited texts (the cost for versions
that recorded none), compared on the candidate's own validation edits when the trainer scored the
active version on them (`comparison.json`), otherwise against the active version's own figures — and
a candidate with no served trained policy at all. `force=True` skips the gate.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from server import paths
from server.bandit import finite, prior_cost

FORMAT = 1
MANIFEST = "manifest.json"
POINTER = "active.json"
TMP_PREFIX = ".tmp-"
BASE = "base"  # the base model, without adapters: always a policy, never a version
MAX_HISTORY = 20


class VersionError(RuntimeError):
    """A version is missing, incomplete or damaged. The message says what to do."""


def versions_root(root: Path | None = None) -> Path:
    return paths.ensure_private_dir(Path(root) if root is not None else paths.models_dir() / "versions")


def new_version_id(now: float | None = None) -> str:
    """Sortable by time: YYYYMMDD-HHMMSS-mmm-<4 hex> (local time, milliseconds, a random tag)."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{int(now * 1000) % 1000:03d}-{secrets.token_hex(2)}"


# --- reading ------------------------------------------------------------------------------------------


@dataclass
class Version:
    id: str
    path: Path
    manifest: dict
    validation: dict = field(default_factory=dict)

    @property
    def base_model(self) -> str:
        return self.manifest.get("base_model", "")

    @property
    def adapters(self) -> dict[str, Path]:
        """Policy name -> adapter folder (peft format)."""
        return {p: self.path / "adapters" / p for p in self.manifest.get("adapters", [])}

    @property
    def served(self) -> list[str]:
        """Policies the runtime may serve: validated, not degenerate, not worse than the base model."""
        return [p for p, v in self.validation.items() if v.get("served")]

    @property
    def mixture_weights(self) -> dict[str, float]:
        path = self.path / "mixture.json"
        if not path.is_file():
            return {}
        return {k: float(v) for k, v in json.loads(path.read_text()).get("weights", {}).items()}

    def best(self, measure: str | None = None) -> tuple[str, float] | None:
        """(policy, figure) of the best served trained policy, or None when none is served. The figure
        is `measure` (`LOG_LOSS` or `COST`, see `figure`); by default the log-loss of y′ when every
        served trained policy recorded one (`training.evaluate.judge` says why), else the capped cost.
        Ties go to the better of the other measure."""
        served = [(p, v) for p, v in self.validation.items() if p != BASE and v.get("served")]
        measure = measure or common_measure(*(v for _, v in served))
        other = COST if measure == LOG_LOSS else LOG_LOSS
        scored = [
            (figure(v, measure), _or_inf(figure(v, other)), p) for p, v in served if figure(v, measure) is not None
        ]
        if not scored:
            return None
        value, _, policy = min(scored)
        return policy, value

    def read_json(self, name: str, default=None):
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else default


def _check_complete(folder: Path) -> dict:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise VersionError(f"Model version {folder.name} has no {MANIFEST}: it is incomplete. Delete {folder}.")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VersionError(f"Model version {folder.name} has a damaged {MANIFEST}. Delete {folder}.") from exc
    bad = [
        rel for rel, size in files.items() if not (folder / rel).is_file() or (folder / rel).stat().st_size != size
    ]
    if bad or not manifest.get("complete"):
        raise VersionError(
            f"Model version {folder.name} is damaged ({', '.join(sorted(bad)) or 'not marked complete'}). "
            f"Delete {folder}; the previous version stays in use."
        )
    return manifest


def load_version(version_id: str, root: Path | None = None) -> Version:
    folder = versions_root(root) / version_id
    if version_id.startswith(".") or "/" in version_id or not folder.is_dir():
        raise VersionError(f"No model version {version_id!r} in {versions_root(root)}.")
    manifest = _check_complete(folder)
    validation_path = folder / "validation.json"
    validation = json.loads(validation_path.read_text()) if validation_path.is_file() else {}
    return Version(id=version_id, path=folder, manifest=manifest, validation=validation)


def list_versions(root: Path | None = None) -> list[Version]:
    """Complete versions, oldest first. Partial and damaged folders are left out."""
    out = []
    for folder in versions_root(root).iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        with contextlib.suppress(VersionError, ValueError, OSError):
            out.append(load_version(folder.name, root))
    return sorted(out, key=lambda v: (float(v.manifest.get("created_at") or 0), v.id))


def read_pointer(root: Path | None = None) -> dict:
    path = versions_root(root) / POINTER
    try:
        data = json.loads(path.read_text())
        return {"version": data.get("version"), "history": list(data.get("history", [])), **data}
    except (FileNotFoundError, ValueError):
        return {"version": None, "history": []}


def active(root: Path | None = None) -> Version | None:
    """The version the runtime serves, or None for the base model alone. A pointer to a version that
    has gone or is damaged reads as None (the base model), never as an error."""
    version_id = read_pointer(root).get("version")
    if not version_id:
        return None
    try:
        return load_version(version_id, root)
    except VersionError:
        return None


# --- writing ------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class VersionWriter:
    """Builds a version in a hidden temporary folder; `commit()` makes it appear whole, or not at all.

        with VersionWriter(base_model=...) as w:
            learner.save(w.adapter_dir("sup"))
            w.write_json("validation.json", {...})
            version = w.commit()

    Leaving the block without `commit()` (an exception) removes the temporary folder.
    """

    def __init__(self, base_model: str | os.PathLike, root: Path | None = None, version_id: str | None = None):
        self.root = versions_root(root)
        clean_partial(self.root)
        self.id = version_id or new_version_id()
        self.path = self.root / f"{TMP_PREFIX}{self.id}-{os.getpid()}"
        self.path.mkdir(mode=0o700)
        self.base_model = str(base_model)
        self.created_at = time.time()
        self.committed: Version | None = None

    def __enter__(self) -> VersionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.committed is None:
            shutil.rmtree(self.path, ignore_errors=True)

    def adapter_dir(self, policy: str) -> Path:
        if not policy or "/" in policy or policy.startswith(".") or policy == BASE:
            raise ValueError(f"bad policy name {policy!r}")
        return self.path / "adapters" / policy

    def add_adapter(self, policy: str, source: Path) -> Path:
        dest = self.adapter_dir(policy)
        shutil.copytree(source, dest)
        return dest

    def write_json(self, name: str, obj) -> None:
        with open(self.path / name, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True, default=str)

    def commit(self, **manifest_extra) -> Version:
        """Write the manifest (the completion marker), sync everything, rename into place."""
        adapters_dir = self.path / "adapters"
        adapters = sorted(
            p.name for p in adapters_dir.iterdir() if (p / "adapter_config.json").is_file()
        ) if adapters_dir.is_dir() else []  # fmt: skip
        files = {}
        for file in sorted(self.path.rglob("*")):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
                files[file.relative_to(self.path).as_posix()] = file.stat().st_size
        manifest = {
            "format": FORMAT,
            "id": self.id,
            "complete": True,
            "created_at": self.created_at,
            "committed_at": time.time(),
            "base_model": self.base_model,
            "adapters": adapters,
            "files": files,
            **manifest_extra,
        }
        with open(self.path / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        for folder in sorted({p.parent for p in self.path.rglob("*")} | {self.path}, reverse=True):
            _fsync_dir(folder)
        final = self.root / self.id
        os.rename(self.path, final)
        _fsync_dir(self.root)
        self.path = final
        self.committed = load_version(self.id, self.root)
        return self.committed


def clean_partial(root: Path | None = None) -> list[Path]:
    """Remove `.tmp-` folders whose writer is no longer running. Returns what was removed."""
    import psutil

    removed = []
    for folder in versions_root(root).glob(f"{TMP_PREFIX}*"):
        try:
            pid = int(folder.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            pid = -1
        if pid == os.getpid() or (pid > 0 and psutil.pid_exists(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


# --- the gate, activation, rollback -------------------------------------------------------------------


def gate_cost(figures: dict) -> float | None:
    """The validation cost versions are compared on when they have no log-loss: the mean of each
    edit's cost capped at 1.

    The uncapped mean is a few outliers on real edits: one long suggestion against a short fix costs
    10 or more (word edits per suggested token), so a policy that is better on most edits could lose
    to one that is worse on most. Capped, an edit counts at most as a suggestion rewritten in full,
    which is also how the Late bandit counts what users do (`server.bandit.prior_cost`, the same
    reading of a version's figures). Versions that recorded only the uncapped mean give that."""
    value = prior_cost(figures)
    return None if value is None else float(value)


LOG_LOSS, COST = "log-loss", "cost"


def figure(figures: dict, measure: str) -> float | None:
    """A policy's validation figure under `measure`: `LOG_LOSS`, the mean log-loss per token of the
    users' edited texts y′ (nats), or `COST`, `gate_cost`. None when not recorded (or not finite)."""
    if measure == LOG_LOSS:
        return finite(figures.get("nll"))
    return gate_cost(figures)


def common_measure(*figures: dict) -> str:
    """The measure all of `figures` can be compared on: the log-loss when each has one, else the cost."""
    return LOG_LOSS if figures and all(figure(f, LOG_LOSS) is not None for f in figures) else COST


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value


@dataclass(frozen=True)
class GateDecision:
    activated: bool
    reason: str
    candidate: str
    candidate_score: float | None = None  # the candidate's best, in `measure`
    active_score: float | None = None  # the active version's best, on the edits it was compared on
    measure: str = LOG_LOSS


def gate(candidate: Version, current: Version | None, tolerance: float = 0.0) -> GateDecision:
    """Whether `candidate` may replace `current` (None: the base model alone). Versions are compared
    on validation log-loss of y′ when both recorded it, otherwise on validation cost (`figure`);
    lower is better; `tolerance` (in that measure) allows a candidate that is that much worse."""
    best = candidate.best()
    if best is None:
        return GateDecision(
            False, "no trained policy passed validation (each degenerated or did worse than the base model)", candidate.id
        )
    if current is None or current.id == candidate.id:
        measure = common_measure(candidate.validation[best[0]])
        return GateDecision(True, f"{best[0]} is not worse than the base model on validation {measure} ({best[1]:.3f})",
                            candidate.id, best[1], measure=measure)  # fmt: skip
    served = [v for p, v in candidate.validation.items() if p != BASE and v.get("served")]
    comparison = candidate.read_json("comparison.json") or {}
    if comparison.get("against") == current.id and gate_cost(comparison) is not None:
        measure = common_measure(*served, comparison)
        theirs = figure(comparison, measure)
        where = "on the new validation edits"
    else:
        current_best = current.best()
        if current_best is None:
            return GateDecision(True, f"the active version {current.id} serves no trained policy", candidate.id, best[1],
                                measure=common_measure(candidate.validation[best[0]]))  # fmt: skip
        measure = common_measure(*served, current.validation[current_best[0]])
        theirs = current.best(measure)[1]  # type: ignore[index]
        where = "each on its own validation edits"
    policy, mine = candidate.best(measure)  # type: ignore[misc]
    verdict = "is not worse than" if mine <= theirs + tolerance else "is worse than"
    return GateDecision(mine <= theirs + tolerance, f"{policy} {mine:.3f} {verdict} {current.id}'s {theirs:.3f} "
                        f"(validation {measure}, {where})", candidate.id, mine, theirs, measure)  # fmt: skip


@contextlib.contextmanager
def _pointer_lock(root: Path):
    """Serialise read-modify-write of the pointer between processes (POSIX; elsewhere best effort)."""
    try:
        import fcntl
    except ImportError:  # Windows: os.replace is still atomic, only concurrent updates may race
        yield
        return
    with open(root / ".active.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_pointer(root: Path, version_id: str | None, history: list[str]) -> None:
    _write_json_atomic(
        root / POINTER, {"version": version_id, "history": history[-MAX_HISTORY:], "updated_at": time.time()}
    )


def activate(version_id: str, *, force: bool = False, tolerance: float = 0.0, root: Path | None = None) -> GateDecision:
    """Make `version_id` the active version if it is complete and passes the gate (or `force`)."""
    root = versions_root(root)
    candidate = load_version(version_id, root)  # raises VersionError when incomplete
    with _pointer_lock(root):
        pointer = read_pointer(root)
        current = active(root)
        decision = gate(candidate, current, tolerance)
        if not decision.activated and force:
            decision = GateDecision(True, f"forced ({decision.reason})", candidate.id, decision.candidate_score,
                                    measure=decision.measure)  # fmt: skip
        if decision.activated and (current is None or current.id != candidate.id):
            history = [v for v in pointer["history"] if v != candidate.id]
            if pointer.get("version"):
                history.append(pointer["version"])
            _write_pointer(root, candidate.id, history)
    return decision


def rollback(root: Path | None = None) -> Version | None:
    """Go back to the version active before this one (skipping any that has gone since); with no
    history left, to the base model alone. Returns the now active version (None: base model)."""
    root = versions_root(root)
    with _pointer_lock(root):
        history = read_pointer(root)["history"]
        while history:
            previous = history.pop()
            try:
                version = load_version(previous, root)
            except VersionError:
                continue
            _write_pointer(root, version.id, history)
            return version
        _write_pointer(root, None, [])
        return None


def prune(keep: int = 5, root: Path | None = None) -> list[str]:
    """Delete all but the newest `keep` versions, never the active one. Rollback skips what has gone.
    Returns the ids deleted."""
    root = versions_root(root)
    active_id = read_pointer(root).get("version")
    ids = [v.id for v in list_versions(root)]
    doomed = [i for i in ids[: max(len(ids) - max(keep, 0), 0)] if i != active_id]
    for version_id in doomed:
        with contextlib.suppress(VersionError):
            delete_version(version_id, root)
    return doomed


def delete_version(version_id: str, root: Path | None = None) -> None:
    """Remove a version that is not active (drop it from the history too)."""
    root = versions_root(root)
    with _pointer_lock(root):
        pointer = read_pointer(root)
        if pointer.get("version") == version_id:
            raise VersionError(f"{version_id} is the active version: roll back or activate another first.")
        folder = root / version_id
        if version_id.startswith(".") or "/" in version_id or not folder.is_dir():
            raise VersionError(f"No model version {version_id!r} in {root}.")
        aside = root / f"{TMP_PREFIX}deleted-{version_id}-0"
        os.rename(folder, aside)  # gone from listings at once; removed below
        if version_id in pointer["history"]:
            _write_pointer(root, pointer.get("version"), [v for v in pointer["history"] if v != version_id])
    shutil.rmtree(aside, ignore_errors=True)


def forget_edits(edit_ids: set[str], root: Path | None = None) -> list[str]:
    """Delete every version trained or validated on any of `edit_ids` (its adapters hold what it learnt
    from them). When the active version is one of them, the newest earlier version that is not becomes
    active, else the base model. Returns the ids of the deleted versions."""
    if not edit_ids:
        return []
    root = versions_root(root)
    tainted = []
    for v in list_versions(root):
        used = v.read_json("edits.json", {}) or {}
        if edit_ids & set(used.get("train", [])) | edit_ids & set(used.get("validation", [])):
            tainted.append(v.id)
    if not tainted:
        return []
    with _pointer_lock(root):
        pointer = read_pointer(root)
        history = [h for h in pointer["history"] if h not in tainted]
        current = pointer.get("version")
        if current in tainted:
            current = history.pop() if history else None
        _write_pointer(root, current, history)
    for version_id in tainted:
        delete_version(version_id, root)
    return tainted
