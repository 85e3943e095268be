"""Command-line entry points: thin wrappers around plain functions that tests call."""
