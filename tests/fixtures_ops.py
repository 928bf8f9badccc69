"""Fixtures for the ops tests."""
