"""Anatomy from segmentations: label tables (TotalSegmentator and your own) and landmarks derived
from a multi-organ label map by written geometric definitions, in LPS mm."""
