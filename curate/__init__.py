"""Curate: probe, hash, split into scene clips, score, filter and encode raw footage."""
