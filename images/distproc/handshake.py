"""The server side of the ``multiprocessing.connection`` handshake, as a state machine.

The stdlib runs ``deliver_challenge`` then ``answer_challenge`` with blocking reads, so each
handshake needs a thread, and a client that says nothing holds it. ``Handshake`` does the
same exchange on bytes it is fed and bytes it leaves in ``out``, so one selector thread can
run hundreds of them (see ``server.py``). No I/O happens here, which keeps it testable.

The exchange (3.11-3.14 are compatible, see CPython ``Lib/multiprocessing/connection.py``)::

    server -> #CHALLENGE#{sha256}<40 random bytes>   (3.12+ format; a 3.11 client takes
                                                      the whole thing as its challenge)
    client -> raw HMAC-MD5 (16 bytes, <=3.11) or {digest}HMAC-digest (3.12+), over all of
              the challenge after #CHALLENGE#, the {sha256} prefix included
    server -> #WELCOME# or #FAILURE#
    client -> #CHALLENGE#<20 bytes> (<=3.11) or #CHALLENGE#{digest}<40 bytes> (3.12+)
    server -> answered in the same format: raw HMAC-MD5 for 20 bytes, {digest}... otherwise
    client -> #WELCOME#
    client -> the first request (a pickled (id, funcname, args, kwds))

Every message is framed as multiprocessing frames it: a 4-byte big-endian signed length, or
-1 and then an 8-byte unsigned one for messages of 2 GiB and more.
"""

from __future__ import annotations

import hmac
import os
import struct

from .stdlib_private import ALLOWED_DIGESTS, CHALLENGE, FAILURE, WELCOME

HANDSHAKE_MESSAGE_MAX = 256  # what the stdlib accepts for each handshake message
# The first request is buffered here, per pending connection, before a thread serves it: a
# real one (accept_connection, create, dummy, incref, decref with their small arguments) is
# 27-72 bytes pickled (3.11, a thread name of 30 characters), so 64 KiB is ample, and 64
# pending handshakes hold at most ~4 MiB. With --max-request-mib (64 MiB) here instead, 16
# connections that announced a big first request and stalled made the master reach 1 GB.
FIRST_REQUEST_MAX = 64 * 1024
_MD5_DIGEST_LEN = 16
_LEGACY_CHALLENGE_LEN = 20
_LEGACY_LENGTHS = (_MD5_DIGEST_LEN, _LEGACY_CHALLENGE_LEN)
_MAX_DIGEST_LEN = max(len(d) for d in ALLOWED_DIGESTS)


class AuthFailed(Exception):
    """The peer does not hold our authkey (or rejected our answer)."""


class NotAClient(Exception):
    """The peer sent something no multiprocessing client sends (HTTP, garbage, a huge size)."""


class TooBig(NotAClient):
    """The peer announced a first request over the handshake's cap (``FIRST_REQUEST_MAX``)."""


def frame(payload: bytes) -> bytes:
    """``payload`` with multiprocessing's length header."""
    n = len(payload)
    if n > 0x7FFFFFFF:
        return struct.pack("!iQ", -1, n) + payload
    return struct.pack("!i", n) + payload


def _digest_of(message: bytes) -> tuple[str, bytes]:
    """(digest name, MAC) of a 3.12+ ``{digest}payload`` message, or ('', message) for the
    legacy lengths; NotAClient otherwise."""
    if len(message) in _LEGACY_LENGTHS:
        return "", message
    if message.startswith(b"{"):
        curly = message.find(b"}", 1, _MAX_DIGEST_LEN + 2)
        if curly > 0 and message[1:curly] in ALLOWED_DIGESTS:
            return message[1:curly].decode("ascii"), message[curly + 1 :]
    raise NotAClient(f"unsupported handshake message of {len(message)} bytes")


def answer(authkey: bytes, challenge: bytes) -> bytes:
    """Our answer to a client's challenge, in the format it was sent in."""
    name, _ = _digest_of(challenge)
    if not name:
        try:
            return hmac.new(authkey, challenge, "md5").digest()
        except ValueError:  # no MD5 (FIPS): what a 3.12+ client would do too
            name = "sha256"
    return b"{%s}%s" % (name.encode("ascii"), hmac.new(authkey, challenge, name).digest())


def verify(authkey: bytes, challenge: bytes, response: bytes) -> bool:
    """Whether ``response`` is a valid MAC of our ``challenge`` in either format."""
    try:
        name, mac = _digest_of(response)
    except NotAClient:
        return False
    try:
        expected = hmac.new(authkey, challenge, name or "md5").digest()
    except ValueError:
        return False
    return hmac.compare_digest(expected, mac)


class Handshake:
    """One connection's handshake and first request: ``feed`` it what arrives, send ``out``.

    ``feed`` raises AuthFailed (``out`` then holds #FAILURE# for the peer) or NotAClient;
    when it returns with ``request`` set, the peer is authenticated and ``request`` holds
    the first request's bytes, unpickled later by the thread that serves it.
    """

    def __init__(self, authkey: bytes, max_request: int = FIRST_REQUEST_MAX) -> None:
        self._authkey = authkey
        self._max_request = max_request  # of the first request (FIRST_REQUEST_MAX says why)
        self._challenge = b"{sha256}" + os.urandom(40)
        self._in = bytearray()
        self._step = 0
        self.out = bytearray(frame(CHALLENGE + self._challenge))
        self.request: bytes | None = None

    def feed(self, data: bytes) -> None:
        self._in += data
        while self.request is None:
            limit = self._max_request if self._step == 3 else HANDSHAKE_MESSAGE_MAX
            message = self._take(limit)
            if message is None:
                return
            self._on_message(message)
        if self._in:
            raise NotAClient("sent more before the reply to its first request")

    def _take(self, limit: int) -> bytes | None:
        """The next complete message, None if incomplete; NotAClient past ``limit``."""
        if len(self._in) < 4:
            return None
        (size,) = struct.unpack_from("!i", self._in)
        start = 4
        if size == -1:
            if len(self._in) < 12:
                return None
            (size,) = struct.unpack_from("!Q", self._in, 4)
            start = 12
        if size < 0 or size > limit:
            if self._step == 3:
                raise TooBig(f"a first request of {size} bytes, over {limit} bytes")
            raise NotAClient(f"a handshake message of {size} bytes (at most {limit})")
        if len(self._in) < start + size:
            return None
        message = bytes(self._in[start : start + size])
        del self._in[: start + size]
        return message

    def _on_message(self, message: bytes) -> None:
        if self._step == 0:  # the client's answer to our challenge
            if not verify(self._authkey, self._challenge, message):
                self.out += frame(FAILURE)
                raise AuthFailed("authentication failed (wrong authkey?)")
            self.out += frame(WELCOME)
        elif self._step == 1:  # the client's own challenge
            if not message.startswith(CHALLENGE):
                raise NotAClient("no challenge where the client sends its own")
            challenge = message[len(CHALLENGE) :]
            if len(challenge) < _LEGACY_CHALLENGE_LEN:
                raise NotAClient(f"a challenge of {len(challenge)} bytes")
            self.out += frame(answer(self._authkey, challenge))
        elif self._step == 2:  # the client's verdict on our answer
            if message != WELCOME:
                raise AuthFailed("the client rejected our answer (another authkey?)")
        else:
            self.request = message
        self._step += 1
