"""Procedural phantoms used as built-in default data."""
