"""Metrics: the paper's table metric (localisation rate + AUC) and helpers."""

from spinectx.metrics.table import TableMetric, landmark_distances_mm, roc_auc

__all__ = ["TableMetric", "landmark_distances_mm", "roc_auc"]
