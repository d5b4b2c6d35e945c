"""The exit status of every ``rushes`` command, in one place (documented in docs/settings.md, "Exit status").

=====  =====================================================================================================
code   meaning
=====  =====================================================================================================
0      all done: every item (video, clip) finished ok, or was skipped as done or as a duplicate
1      finished, but some items failed: their rows say why; the closing line and ``summary.json`` count them
2      bad usage or input: a flag, a value, a path, an address, a damaged manifest; one line on stderr
3      the Ray cluster was lost mid-job (its head stopped answering); finished work is saved
130    interrupted by SIGINT (Ctrl-C); finished work is saved and the same command resumes
143    interrupted by SIGTERM; the same
=====  =====================================================================================================

Usage (a handler)::

    from rushes import exits
    return exits.finished(failed=summary["error"])     # 0, or 1 when any item failed

``rushes.cli.main`` maps errors that reach it to these codes; ``rushes.cluster``'s watchdog exits with
:data:`LOST_CLUSTER`. :func:`failure_lines` groups failures by reason for a command's closing summary.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from typing import Iterable

OK = 0
ITEMS_FAILED = 1
USAGE = 2
LOST_CLUSTER = 3
# Every code a command may return, with its one-line meaning (docs/settings.md shows the same table; a test holds it).
MEANINGS = {
    OK: "all done (skipped and duplicate items count as done)",
    ITEMS_FAILED: "finished, but some items failed (counted in the closing line and summary.json)",
    USAGE: "bad usage or input (one line on stderr naming it and the fix)",
    LOST_CLUSTER: "the Ray cluster was lost mid-job (finished work is saved; rerun to resume)",
    128 + signal.SIGINT: "interrupted by SIGINT (Ctrl-C); rerun to resume",
    128 + signal.SIGTERM: "interrupted by SIGTERM; rerun to resume",
}


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def interrupted(signum: int) -> int:
    """The status of a command stopped by ``signum``: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


def finished(failed: int) -> int:
    """The status of a command that ran to its end: :data:`ITEMS_FAILED` when ``failed`` items failed, else OK."""
    return ITEMS_FAILED if failed else OK


def failure_lines(failures: Iterable[tuple[str | None, str | None]], limit: int = 8, width: int = 160) -> list[str]:
    """Failures grouped by reason for a closing summary, most frequent first::

        '  3 x decode: ffmpeg cannot read ITEM: moov atom not found (e.g. runs/raw/a.mp4)'

    ``failures`` holds one ``(reason, item)`` per failed item (a ``None`` reason counts as ``'unknown'``); the item's
    own name inside its reason is written ``ITEM``, so the same failure of many files is one line. At most ``limit``
    lines, then ``'  ... and N more reasons'``."""
    first: dict[str, str] = {}
    reasons = []
    for reason, item in failures:
        text = " ".join((reason or "unknown").split())
        if item:
            text = text.replace(str(item), "ITEM")
        text = _ADDRESS.sub("0x..", text)  # ffmpeg names its contexts by memory address: one per run
        reasons.append(text)
        if item:
            first.setdefault(text, str(item))
    counts = Counter(reasons).most_common()
    lines = []
    for text, n in counts[:limit]:
        shown = text if len(text) <= width else text[:width - 3] + "..."
        lines.append(f"  {n} x {shown}" + (f" (e.g. {first[text]})" if text in first else ""))
    if len(counts) > limit:
        lines.append(f"  ... and {len(counts) - limit} more reasons")
    return lines
