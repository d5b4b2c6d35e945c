"""The CLI's help contract, checked in tests: every flag has help text that states its default.

Usage (in a test)::

    from rushes.testing.cli_help import help_problems, subparser
    assert help_problems(subparser(register, "caption")) == []

One style for every command: a flag's help ends with ``(default: X)``, where X is the value, ``off`` for a
switch, ``none``/``all``/... when there is no value, or says where the value comes from (``the preset's``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

_DEFAULT = re.compile(r"\(default[^)]*\)")


def subparser(register: Callable, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` after ``register(subparsers)`` has added it (as ``rushes`` does)."""
    parser = argparse.ArgumentParser(prog="rushes")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    return sub.choices[command]


def _shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` prints it (after the formatter's ``%(default)s`` and additions)."""
    formatter = parser._get_formatter()  # noqa: SLF001 - argparse has no public per-action formatting
    return formatter._expand_help(action) if action.help else ""  # noqa: SLF001


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """One line per argument of ``parser`` whose help is missing, or per optional flag (not ``required``) whose
    help does not state its default or states another value than the real default."""
    problems = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.help == argparse.SUPPRESS:
            continue
        name = "/".join(action.option_strings) or action.dest
        text = _shown_help(parser, action)
        if not text.strip():
            problems.append(f"{name}: no help text")
        elif action.option_strings and not action.required and not _DEFAULT.search(text):
            problems.append(f"{name}: help does not state its default: {text!r}")
        elif action.option_strings and not action.required and action.default not in (None, argparse.SUPPRESS) \
                and not isinstance(action.default, bool) and str(action.default) not in _DEFAULT.search(text).group():
            problems.append(f"{name}: help states a default other than the real one ({action.default!r}): {text!r}")
    return problems
