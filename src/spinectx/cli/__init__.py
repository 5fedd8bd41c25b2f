"""Command-line apps (Hydra): spinectx-synth, spinectx-data, spinectx-train.

Importing this package registers the OmegaConf resolver ``spinectx.job_dirname`` (see
:func:`job_dirname`), so it exists wherever a spinectx app composes or launches a config: in the
main process and in launcher workers (joblib, submitit), which import the task function's module.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from omegaconf import OmegaConf


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


JOB_DIRNAME_MAX = 120     # bytes; file systems allow 255 per path component
JOB_DIRNAME_HASH = 12     # hex digits of the SHA-1 of the full override string
_SAFE_DIRNAME = re.compile(r"[A-Za-z0-9_+~@,=][A-Za-z0-9._+~@,=-]*", re.ASCII)  # never starts with '-' or '.'
#: the sweeps' axes (paper tables, experiment=classifiers, RSNA views): kept first in a shortened job folder name
JOB_DIRNAME_AXES = ("method", "classifier", "data.view", "data.fold", "data.fraction")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._+~@,=-]+", re.ASCII)


def job_dirname(overrides: str) -> str:
    """A sweep job's folder name from its override string (Hydra's ``job.override_dirname``,
    e.g. ``"data.fold=0,method=ccfnet_r18"``): always one valid path component of at most
    ``JOB_DIRNAME_MAX`` (120) ASCII bytes, never ``.``/``..``, never containing ``/``.

    A string that is already safe (ASCII letters, digits and ``._+~@,=-``, not starting with ``.``
    or ``-``) and at most 120 bytes long is returned unchanged, so the folders of earlier sweeps
    keep their names. Any other string becomes ``<short form>-<hash>``. The hash is the first 12
    hex digits of the SHA-1 of the full string: the name is deterministic, and distinct overrides
    give distinct names. The short form lists the overrides in their order, every run of other
    characters (``/`` included) made ``_``, leaving out what does not fit: path-valued items
    (holding ``/``) first, then the items with the longest keys (deep settings such as
    ``data.augment.bias_field_coef=0.2``), the longest items among equal keys. The sweep axes
    (``JOB_DIRNAME_AXES``: ``method``, ``classifier``, ``data.view``, ``data.fold``,
    ``data.fraction``) are kept before any other item, so cells of a sweep differ readably, not
    only by hash. A name never starts with ``-`` or
    ``.`` (leading ones are dropped from the short form). An empty string gives ``"no-overrides"``.

    Hydra writes a job's full overrides to ``<job dir>/.hydra/overrides.yaml``; spinectx finds
    earlier runs through that file and ``metrics.json``, never by parsing folder names. Used in
    ``conf/experiment/{table1,table2,data_fraction}.yaml`` as
    ``hydra.sweep.subdir: ${spinectx.job_dirname:${hydra:job.override_dirname}}``.
    """
    overrides = str(overrides)
    if not overrides:
        return "no-overrides"
    if len(overrides) <= JOB_DIRNAME_MAX and _SAFE_DIRNAME.fullmatch(overrides):
        return overrides
    digest = hashlib.sha1(overrides.encode("utf-8")).hexdigest()[:JOB_DIRNAME_HASH]
    room = JOB_DIRNAME_MAX - JOB_DIRNAME_HASH - 1
    raw = overrides.split(",")
    items = [_UNSAFE_RUN.sub("_", item) for item in raw]

    def priority(i: int) -> tuple:  # kept first: no path, a sweep axis, a short key, a short item
        key = raw[i].split("=")[0]
        return "/" in raw[i], key.lstrip("+~") not in JOB_DIRNAME_AXES, len(key), len(raw[i])

    kept, used = set(), -1
    for i in sorted(range(len(items)), key=priority):
        if used + 1 + len(items[i]) > room:
            continue
        kept.add(i)
        used += 1 + len(items[i])
    readable = ",".join(item for i, item in enumerate(items) if i in kept).lstrip(".-")
    readable = readable or _UNSAFE_RUN.sub("_", overrides).lstrip(".-")[:room]  # one long item
    return f"{readable}-{digest}" if readable else digest


OmegaConf.register_new_resolver("spinectx.job_dirname", job_dirname, replace=True)


def landmark_config(name: str):
    """The landmark set ``conf/data/landmarks/<name>.yaml`` (a DictConfig), for configs whose
    landmark set follows a value (``landmarks: ${spinectx.landmarks:rsna2024_${data.view}}``).

    Raises:
        ConfigError: no such landmark set (the message lists the known ones; for an RSNA set, the
            views).
    """
    from spinectx.data.errors import ConfigError

    folder = Path(CONF_DIR) / "data" / "landmarks"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        if name.startswith("rsna2024_"):
            views = [k.removeprefix("rsna2024_") for k in known if k.startswith("rsna2024_")]
            raise ConfigError(f"data.view={name.removeprefix('rsna2024_')!r} is not a view of RSNA 2024; "
                              f"use one of {views}")
        raise ConfigError(f"landmark set {name!r} not found: no {path} (known: {known})")
    return OmegaConf.load(path)


OmegaConf.register_new_resolver("spinectx.landmarks", landmark_config, replace=True)

# the release's batch sizes (SPEC §3: 32 for ResNet-18, 12 for ResNet-50); others as ResNet-18
PAPER_BATCH_SIZES = {"resnet50": 12}


def paper_batch_size(backbone: str) -> int:
    """The paper scale's batch size for ``backbone`` (``paper_batch_size: ${spinectx.paper_batch_size:
    ${model.backbone}}``), so ``scale=paper`` / ``rsna_paper`` follow ``model.backbone=`` whether or not
    a ``method=`` set it."""
    return PAPER_BATCH_SIZES.get(str(backbone), 32)


OmegaConf.register_new_resolver("spinectx.paper_batch_size", paper_batch_size, replace=True)


@functools.lru_cache(maxsize=64)  # resolved several times per job (hash, instantiate, loggers)
def stage1_checkpoint(sweep_dir: str, data_root: str, view: str | None, fold: int, image_size: int | None = None) -> str:
    """The localiser checkpoint a two-stage job of a sweep classifies the points of: the finished
    one-stage job with the cell read-out (``model/context=none``) in ``sweep_dir`` trained on the
    same data (``split.json``: root, view, fold) and, when given, ``data.image_size``, its checkpoint
    from ``metrics.json``
    (``model.stage1_ckpt: ${spinectx.stage1_checkpoint:${hydra:sweep.dir},${data.root},…}`` in
    ``conf/classifier/``; ``make classifiers`` runs the one-stage heads first).

    Raises:
        ConfigError: no such finished job in ``sweep_dir``.
    """
    import json

    from spinectx.data.errors import ConfigError

    root = Path(str(data_root)).resolve()
    view = None if view in (None, "", "None", "null") else str(view)
    for split in sorted(Path(sweep_dir).rglob("split.json")):
        job = split.parent
        try:
            info = json.loads(split.read_text())
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            metrics = json.loads((job / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        model = cfg.get("model") or {}
        if model.get("name") == "two_stage" or (model.get("context") or {}).get("kind", "none") != "none":
            continue
        if Path(info.get("data_root", "")).resolve() != root or info.get("view") != view or int(info.get("fold", -1)) != int(fold):
            continue
        size = OmegaConf.select(cfg, "data.image_size", throw_on_resolution_failure=False)
        if image_size is not None and isinstance(size, int) and size != int(image_size):
            continue
        checkpoint = (metrics.get("evaluation") or {}).get("checkpoint")
        if checkpoint and Path(checkpoint).is_file():
            return str(Path(checkpoint).resolve())
    raise ConfigError(f"no finished one-stage job with the cell read-out (classifier=cell) for data {root}"
                      f"{f' view {view}' if view else ''} fold {fold}{f' at {image_size} px' if image_size else ''} in "
                      f"{sweep_dir}: run classifier=cell first "
                      "(make classifiers runs the one-stage heads, then the two-stage ones)")


OmegaConf.register_new_resolver("spinectx.stage1_checkpoint", stage1_checkpoint, replace=True)
