"""Fixtures for the mapping tests."""
