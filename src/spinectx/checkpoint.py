"""Reading checkpoint files with a clear error for files that are not checkpoints."""

from __future__ import annotations

from pathlib import Path

from spinectx.data.errors import CheckpointError

#: what every spinectx (Lightning) checkpoint holds
CHECKPOINT_KEYS = ("state_dict", "hyper_parameters")


def read_checkpoint(path: str | Path) -> dict:
    """The content of the checkpoint file ``path``, loaded on the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a file that torch cannot load (a text file, a truncated or empty file),
            or one that is not a spinectx checkpoint (not a dict with ``state_dict`` and
            ``hyper_parameters``, e.g. a bare state dict); the message names the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds: UnpicklingError, RuntimeError (zip), EOFError, ...
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0][:160] if text else "no detail"
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__}: {reason})") from exc
    if not isinstance(content, dict) or any(k not in content for k in CHECKPOINT_KEYS):
        found = sorted(map(str, content))[:8] if isinstance(content, dict) else type(content).__name__
        raise CheckpointError(path, f"not a spinectx checkpoint (expected the keys {list(CHECKPOINT_KEYS)}; found {found})")
    return content


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be loaded as a checkpoint (``"not a readable checkpoint (...)"``,
    without the file name), or None when it can. Loads the whole file."""
    try:
        read_checkpoint(path)
    except CheckpointError as exc:
        return exc.problem
    except FileNotFoundError:
        return "file not found"
    return None
