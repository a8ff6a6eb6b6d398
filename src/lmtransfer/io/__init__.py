"""Data in: volumes, landmark files, coordinate frames and the validated manifest."""
