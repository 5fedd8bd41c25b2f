"""Deterministic synthetic lumbar-spine MR studies: one phantom, two dataset layouts.

* :func:`generate_dataset` / :func:`render_study` — the TianChi 2020 layout (SPEC §1–2), see
  :mod:`.tianchi`;
* :func:`generate_rsna_dataset` / :func:`render_rsna_study` — the RSNA 2024 Kaggle layout (SPEC §6),
  see :mod:`.rsna` (layout, severities) and :mod:`.rsna_render` (one study).

Both draw the same phantom: :mod:`.anatomy` (spine geometry), :mod:`.labels` (TianChi classes,
also the look of RSNA bodies / discs), :mod:`.sagittal` and :mod:`.axial` (rendering),
:mod:`.dicom` (headers and files), :mod:`.rsna_labels` (RSNA spellings, frequencies, quirks),
:mod:`.seeding` (named random streams: output depends only on the
seed and the study index, whatever the number of worker processes).
"""

from .anatomy import LABELS
from .dicom import SyntheticSeries
from .labels import DEFAULT_FREQUENCIES, DISCS, LANDMARKS, VERTEBRAE, StudyLabels, sample_labels
from .rsna import RSNA_FILES, RsnaLabelPoint, RsnaSeries, RsnaStudy, generate_rsna_dataset, render_rsna_study
from .rsna_labels import (
    CONDITIONS,
    DEFAULT_LEVEL_WEIGHTS,
    DEFAULT_RSNA_FREQUENCIES,
    LEVELS,
    QUIRKS,
    SERIES_DESCRIPTIONS,
    SEVERITIES,
    TRAIN_COLUMNS,
    RsnaLabels,
    sample_rsna_labels,
    study_quirk,
)
from .tianchi import ANNOTATOR, SyntheticLandmark, SyntheticStudy, generate_dataset, preview_image, render_study

__all__ = [
    "DEFAULT_FREQUENCIES",
    "VERTEBRAE",
    "DISCS",
    "LANDMARKS",
    "LABELS",
    "ANNOTATOR",
    "StudyLabels",
    "SyntheticLandmark",
    "SyntheticSeries",
    "SyntheticStudy",
    "sample_labels",
    "render_study",
    "generate_dataset",
    "preview_image",
    # RSNA 2024 layout
    "CONDITIONS",
    "LEVELS",
    "SEVERITIES",
    "SERIES_DESCRIPTIONS",
    "TRAIN_COLUMNS",
    "DEFAULT_RSNA_FREQUENCIES",
    "DEFAULT_LEVEL_WEIGHTS",
    "QUIRKS",
    "RSNA_FILES",
    "RsnaLabels",
    "RsnaLabelPoint",
    "RsnaSeries",
    "RsnaStudy",
    "sample_rsna_labels",
    "study_quirk",
    "render_rsna_study",
    "generate_rsna_dataset",
]
