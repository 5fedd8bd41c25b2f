"""Metrics: the paper's table metric (localisation rate + AUC), the TianChi challenge metric
(confusion matrix + macro-F1), the RSNA 2024 competition metric (weighted log loss) and helpers."""

from spinectx.metrics.challenge import challenge_classes, challenge_metric
from spinectx.metrics.rsna import (
    RSNAMetric,
    prior_submission,
    read_submission_csv,
    read_train_csv,
    row_ids,
    rsna_score,
    solution_from_train,
)
from spinectx.metrics.table import TableMetric, landmark_distances_mm, roc_auc

__all__ = [
    "RSNAMetric",
    "TableMetric",
    "challenge_classes",
    "challenge_metric",
    "landmark_distances_mm",
    "prior_submission",
    "read_submission_csv",
    "read_train_csv",
    "roc_auc",
    "row_ids",
    "rsna_score",
    "solution_from_train",
]
