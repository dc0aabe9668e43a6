"""Socket options on ``multiprocessing.connection`` connections, by file descriptor.

``TCP_NODELAY`` matters: multiprocessing writes a message over 16 KiB as a header and a body
(two writes), and a new connection's first request follows the handshake's last write. With
Nagle's algorithm on, each such second write waits for the peer's delayed ACK, 40 ms on
Linux: a 2048-task lease fell from about 900k to 23k tasks/s, and a connection took 264 ms
instead of 3 ms (measured in bench/ours.py).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def socket_of(fd: int) -> Iterator[socket.socket]:
    """A duplicate socket object for ``fd`` (options set on it apply to the connection)."""
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as s:
        yield s


def set_nodelay(fd: int) -> None:
    """Send small writes at once (see the module docstring)."""
    with contextlib.suppress(OSError), socket_of(fd) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def shut_down(fd: int) -> None:
    """End both directions now: a thread blocked reading the socket gets EOF."""
    with contextlib.suppress(OSError), socket_of(fd) as s:
        s.shutdown(socket.SHUT_RDWR)
