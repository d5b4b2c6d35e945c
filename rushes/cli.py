"""The ``rushes`` command: one subcommand per stage.

Each stage's CLI module exposes ``register(subparsers)``, adding its subcommands with
``set_defaults(func=handler)``. The modules are imported plainly below; they import heavy libraries
(torch, ray, transformers) only inside their handlers, so ``rushes --help`` stays fast. Each command's flags
are generated from its typed config by :mod:`rushes.settings` (which also reads ``--config FILE``); a bad
value is a usage error, exit 2, naming the flag. A handler returns the process exit status of
:mod:`rushes.exits` (0 done, 1 some items failed, 2 bad usage or input, 3 lost cluster, 130/143 interrupted);
errors that reach ``main`` are mapped to the same codes: a bad setting, Ray unreachable at the address the user
gave or too small, a damaged manifest, a full disk (2), a job stopped by SIGINT or SIGTERM (128 + the signal
number; finished work is kept and a rerun resumes).

Output: quiet by default (rushes' own INFO lines and one progress bar; no Ray banners or Ray log lines, see
:func:`rushes.cluster.configure_output`); ``-q`` shows only warnings, errors and the closing summary; ``-v`` adds
debug lines and Ray's own output. Both work before or after the subcommand (``rushes -q curate ...`` or
``rushes curate ... -q``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading

from rushes import exits, progress
from rushes.caption import cli as caption_cli
from rushes.cluster import JobInterrupted, RayConnectError, ResourceShortage, configure_output, interrupting_signal
from rushes.manifests.store import ManifestError
from rushes.curate import cli as curate_cli
from rushes.export import cli as export_cli
from rushes.inspect import cli as report_cli
from rushes.settings import SettingError, usage_error
from rushes.train import cli as train_cli

# The modules that register subcommands, in the order their commands appear in --help.
COMMAND_MODULES = (curate_cli, caption_cli, train_cli, report_cli, export_cli)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every stage's subcommands."""
    from rushes import __version__

    parser = argparse.ArgumentParser(
        prog="rushes",
        description="Turn raw footage into text-to-video training data (curate -> filter -> caption -> train), "
                    "and look into the manifests (inspect).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rushes {__version__}")
    add_output_flags(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="the step to run; `rushes COMMAND --help` lists its flags and their defaults")
    for module in COMMAND_MODULES:
        module.register(sub)
    for command in sub.choices.values():  # -q/-v after the subcommand too; unset there unless given
        add_output_flags(command, argparse.SUPPRESS)
    return parser


def add_output_flags(parser: argparse.ArgumentParser, default) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (a subcommand's default is SUPPRESS, so one given before it stays)."""
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="show only warnings, errors and the closing summary: no progress bar, no info lines "
                             "(default: off)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debug messages, and Ray's own banners and log lines (default: off)")


def configure_logging(args) -> None:
    """Log levels and the progress bar for ``-q``/``-v`` (see the module doc)."""
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("rushes").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    progress.configure(show=not quiet)
    configure_output(verbose=verbose)


def _stop(signum, _frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise JobInterrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rushes`` console script."""
    if threading.current_thread() is threading.main_thread():
        # A command started in the background by a script inherits SIGINT as ignored; Ctrl-C and kill -INT must
        # still stop it cleanly (finally blocks run, work is saved).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("-q/--quiet and -v/--verbose contradict each other: give one")
    configure_logging(args)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return exits.USAGE
    # SIGTERM stops a command like Ctrl-C does: finally blocks run (Ray is shut down, temporary files stay for
    # the next run to clear) and the message below says how to resume. rushes.cluster does the same while
    # a Ray job runs, over Ray's own handler.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return int(args.func(args) or 0)
    except SettingError as exc:  # a handler that did not report a bad setting itself
        return usage_error(args, exc)
    except (RayConnectError, ManifestError) as exc:  # a cluster not reached or too small; a damaged manifest
        hint = f" (set by --{exc.setting.replace('_', '-')})" if isinstance(exc, ResourceShortage) else ""
        print(f"rushes {args.command}: {exc}{hint}", file=sys.stderr)
        return exits.USAGE
    except OSError as exc:  # also a Ray task's error that wraps one
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"rushes {args.command}: a disk or quota is full ({exc.strerror or exc}); nothing half-written is "
              f"visible and finished work is saved: free space, then rerun the same command to resume",
              file=sys.stderr)
        return exits.USAGE
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM
        signum = getattr(exc, "signum", None) or interrupting_signal() or signal.SIGINT
        print(f"rushes {args.command}: stopped by {signal.Signals(signum).name}; finished work is saved, rerun "
              f"the same command to resume", file=sys.stderr)
        return exits.interrupted(signum)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
