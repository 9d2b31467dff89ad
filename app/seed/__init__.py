"""Reproducible order generators: realistic, edge-case and invalid records."""
