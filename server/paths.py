"""Where Redline keeps its data: models, the database, logs.

`REDLINE_HOME` overrides the platform's user data folder, so tests never touch real data.
Folders are created readable by their owner only.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_home() -> Path:
    """The data folder: $REDLINE_HOME, else the platform's user data folder for "redline"."""
    override = os.environ.get("REDLINE_HOME")
    root = Path(override).expanduser() if override else Path(platformdirs.user_data_dir("redline"))
    return ensure_private_dir(root)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: nobody but its owner may list or read it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def models_dir() -> Path:
    return ensure_private_dir(data_home() / "models")


def database_path() -> Path:
    return data_home() / "redline.db"


def logs_dir() -> Path:
    return ensure_private_dir(data_home() / "logs")
