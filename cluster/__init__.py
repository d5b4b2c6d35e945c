"""Shared cluster layer: connecting to Ray (``cluster.ray_connect``). Stages may import it; it imports no stage."""
