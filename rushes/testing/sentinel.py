"""A sentinel file that records whether anything opened it: a named pipe (FIFO) with a writer thread.

A playlist or list that points at the sentinel must never make rushes open it. Opening a FIFO for
reading wakes the writer blocked in ``open(O_WRONLY)``; the writer then records the opening and serves
``payload`` (e.g. a real video segment, so a reader that gets through would succeed, not just fail). When
the test is done, :meth:`Sentinel.close` wakes the writer itself without counting that as an open.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class Sentinel:
    """``path`` is a FIFO; ``opened`` turns True when a reader other than :meth:`close` opens it."""

    def __init__(self, path: str | os.PathLike, payload: bytes = b"") -> None:
        self.path = Path(path)
        os.mkfifo(self.path)
        self.payload = payload
        self.opened = False
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the FIFO
        if not self._closing:
            self.opened = True
        try:
            view = memoryview(self.payload)
            while view and not self._closing:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            pass  # the reader went away
        finally:
            os.close(fd)

    def close(self) -> None:
        """Wake the writer (if nobody opened the FIFO) and wait for it."""
        self._thread.join(timeout=1.0)  # a reader that opened it has already woken the writer
        self._closing = True
        if self._thread.is_alive():
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(timeout=10)
            os.close(fd)

    def __enter__(self) -> Sentinel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
