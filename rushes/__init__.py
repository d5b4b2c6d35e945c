"""rushes: raw footage to text-to-video training data. The command-line entry point lives in rushes.cli."""

__version__ = "0.1.0"
