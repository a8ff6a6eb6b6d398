"""Patches: landmark-centred 2.5D planes cut from volumes, background points, and the patch cache."""
