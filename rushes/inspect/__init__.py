"""Inspect: terminal summary, HTML report and SQL over a run's manifests."""
