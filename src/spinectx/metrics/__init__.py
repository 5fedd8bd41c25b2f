"""Metrics: the paper's table metric (localisation rate + AUC), the TianChi challenge metric
(confusion matrix + macro-F1) and helpers."""

from spinectx.metrics.challenge import challenge_classes, challenge_metric
from spinectx.metrics.table import TableMetric, landmark_distances_mm, roc_auc

__all__ = ["TableMetric", "challenge_classes", "challenge_metric", "landmark_distances_mm", "roc_auc"]
