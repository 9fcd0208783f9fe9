"""Checks of the deploy/ files."""
