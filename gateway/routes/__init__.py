"""Thin blueprints: models, completions, health."""
