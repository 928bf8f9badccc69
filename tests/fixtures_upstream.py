"""Fixtures for the upstream tests."""
