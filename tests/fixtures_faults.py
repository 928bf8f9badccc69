"""Fixtures for the faults tests."""
