"""Drift of live inputs and predictions against each version's reference profile."""
