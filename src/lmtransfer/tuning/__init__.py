"""Hyper-parameter search (Optuna) and hand-over of the best setting to ``params.yaml``."""
