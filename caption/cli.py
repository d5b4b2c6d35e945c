"""Command-line subcommands of this stage (placeholder until the stage lands)."""


def register(subparsers) -> None:
    """Add this stage's subcommands to the ``rushes`` parser."""
