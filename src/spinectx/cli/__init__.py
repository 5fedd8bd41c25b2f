"""Command-line apps (Hydra): spinectx-synth, spinectx-data, spinectx-train."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> str:
    """Absolute path of the ``conf/`` folder (``SPINECTX_CONF`` overrides; default: the repo's)."""
    env = os.environ.get("SPINECTX_CONF")
    if env:
        return str(Path(env).resolve())
    repo_conf = Path(__file__).resolve().parents[3] / "conf"
    if repo_conf.is_dir():
        return str(repo_conf)
    raise FileNotFoundError(
        f"spinectx configs not found at {repo_conf}; install spinectx from its repository (pip install -e .) "
        "or set SPINECTX_CONF to the conf/ folder"
    )


CONF_DIR = config_dir()
