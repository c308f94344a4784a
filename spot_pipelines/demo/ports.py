"""A free TCP port on 127.0.0.1: the one copy the demo, the tests and the benchmarks share (no moto import)."""

from __future__ import annotations

import socket


def free_port(preferred: int = 0) -> int:
    """`preferred` when it is free (and not 0), else any free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")
