"""Landmark detection on whole volumes and its evaluation."""
