"""What the two-node cluster tests and ``bench/scale.py`` share to start their own ``ray start --block`` nodes.

    env = node_env(temp_dir, repo)          # token authentication with a fresh token, Ray's files in temp_dir
    port = free_ports(1)[0]                 # a free loopback port for the head's GCS
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free at the time of the call."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def node_env(temp_dir: Path, repo: Path) -> dict:
    """The environment of nodes (and of the ``rushes`` processes joining them): token authentication with a token
    of this cluster's own (nothing read from or written to ~/.ray), Ray's files under ``temp_dir``, no address or
    token path inherited, and longer agent start-up for a loaded machine."""
    return {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")},
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_TMPDIR": str(temp_dir),
            "PYTHONPATH": str(repo), "RAY_USAGE_STATS_ENABLED": "0", "RAY_agent_register_timeout_ms": "120000"}
