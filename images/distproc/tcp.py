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
import struct
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


def set_served_options(
    sock: socket.socket, keepalive: tuple[int, int, int], send_timeout: float
) -> None:
    """Options of a connection handed to its serving thread (server.py), so that it cannot
    hold its thread and its slot of ``--max-connections`` forever.

    ``keepalive`` is (idle, interval, count) in seconds: after ``idle`` seconds with nothing
    received, a probe every ``interval``; ``count`` unanswered probes close the connection,
    so a peer that vanished without closing (a powered-off worker host, a dropped NAT entry)
    is noticed after idle + interval * count seconds (30 + 10 * 3: about a minute) instead
    of never. An idle but live peer answers the probes and is never cut (workers legitimately
    sit idle between jobs, a classic ``get(timeout=None)`` may block for hours).

    ``TCP_USER_TIMEOUT`` is set to the same span: keepalive probes only run while nothing we
    sent is unacknowledged, so without it a peer that vanishes while a reply is in flight is
    noticed only when the retransmissions give up (``tcp_retries2``: about 15 minutes).

    ``SO_SNDTIMEO`` bounds each blocking write of a reply: ``Connection`` writes the descriptor
    with ``os.write``, which returns short, or fails with EAGAIN, once it has waited
    ``send_timeout`` seconds (a socket timeout would not do: it makes the descriptor
    non-blocking). So a client that asks for a big reply and never reads releases the reply
    and its thread after a few timeouts: measured on loopback, a 16 MB reply to a client that
    reads nothing, 1 s: 2.8 MB written at 1.0 s, 0.18 MB more at 2.0 s (the send buffer grew),
    EAGAIN at 3.1 s. A client that keeps reading, however slowly, is not cut. 0 disables
    either.
    """
    idle, interval, count = keepalive
    if idle > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        options = (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count))
        for name, value in options:
            opt = getattr(socket, name, None)  # Linux; macOS has TCP_KEEPALIVE for idle
            if opt is not None:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
        user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
        if user_timeout is not None:
            sock.setsockopt(socket.IPPROTO_TCP, user_timeout, (idle + interval * count) * 1000)
    if send_timeout > 0:
        whole = int(send_timeout)
        tv = struct.pack("ll", whole, int((send_timeout - whole) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
