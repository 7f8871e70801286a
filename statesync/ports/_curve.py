"""CURVE (CurveZMQ) for the ports layer: key pairs, keys in endpoints, ZAP requests.

- :class:`CurveKeys` is one side's key pair. Its ``repr`` never shows the
  secret key; nothing in the ports layer logs or formats it.
- A connecting side learns the listener's public key from the endpoint:
  ``tcp://10.0.0.2:7001?key=<40 Z85 characters>`` (the suffix is split off
  before ZeroMQ sees the address). A CURVE listener reports its endpoints in
  that form, so endpoints advertised in a handshake, gossiped by a node or
  printed in a log carry the key with them: the string is all another process
  needs to reach it.
- :class:`AuthRequest` is what the runtime's authorizer is asked: at the CURVE
  handshake (the ZAP handler), again when the first frame of a connection
  arrives, and for every authenticated connection by
  :meth:`~statesync.ports.PortRuntime.recheck_links`.

Security (CURVE)
================

With ``PortOptions.curve`` (a key pair), a listener's ROUTER is a CURVE server
and ``connect`` makes a CURVE client of the key named in the endpoint
(``tcp://host:port?key=<Z85>``; a CURVE listener reports its endpoints that way,
so they travel with their key). The runtime serves ZAP (RFC 27) itself: a REP
socket on ``inproc://zeromq.zap.01`` in its own zmq context, bound before the
first CURVE listener binds, read by a trio task through the adapter (no thread,
no asyncio). Each request goes to the runtime's *authorizer* with the
listener's ZAP domain, so one runtime can admit different keys on different
listeners; an admitted connection gets its key as ``User-Id``. The listener's
receiver reads that metadata from every frame: the first one (the ``Hello``) is
checked with the authorizer again, and later ones must carry the link's key.
``RemoteInfo.public_key`` tells the code above who is on the other side.
ZAP only runs at the handshake, so after a policy change
:meth:`PortRuntime.recheck_links` closes the connections whose key is no
longer admitted. A connecting side whose handshake fails (refused key, wrong
server key, CURVE on one side only) would be retried by ZeroMQ forever in
silence; its socket monitor turns the failure into a
:class:`~statesync.ports.HandshakeFailed` that says which and what to check,
and a CURVE listener's monitor logs, rate-limited, the handshakes it failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Final, Literal

import attrs
import zmq
from zmq.utils import z85

from statesync.errors import InvalidKey, SocketClosed
from statesync.ports._zsocket import TrioSocket

KEY_SUFFIX: Final = "?key="
KEY_CHARS: Final = 40
"""A CURVE key in Z85 text: 40 characters for 32 bytes."""
ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
logger = logging.getLogger("statesync.ports")
_Z85: Final = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def is_key_text(text: str) -> bool:
    """Whether ``text`` is a CURVE key in canonical Z85 form (40 characters, 32 bytes)."""
    if len(text) != KEY_CHARS or not _Z85.fullmatch(text):
        return False
    try:
        raw = z85.decode(text.encode("ascii"))
    except (KeyError, ValueError):
        return False
    return len(raw) == 32 and z85.encode(raw).decode("ascii") == text


def check_key_text(text: str, what: str) -> str:
    """``text`` if it is a Z85 key, else InvalidKey naming ``what`` (never echoing it)."""
    if not is_key_text(text):
        raise InvalidKey(
            f"{what} is not a CURVE key: a key is 40 Z85 characters (statesync keygen prints one)"
        )
    return text


def split_key(endpoint: str) -> tuple[str, str | None]:
    """``(address, key)`` of an endpoint that may end in ``?key=<Z85>``; key None without it.

    A Z85 key may itself hold ``?`` or ``=``, so the suffix is found by its
    fixed length, not by searching.
    """
    n = len(KEY_SUFFIX) + KEY_CHARS
    if len(endpoint) > n and endpoint[-n:].startswith(KEY_SUFFIX):
        address, key = endpoint[:-n], endpoint[-KEY_CHARS:]
        return address, check_key_text(key, f"the key in endpoint {address}{KEY_SUFFIX}...")
    if KEY_SUFFIX in endpoint:
        address = endpoint[: endpoint.index(KEY_SUFFIX)]
        raise InvalidKey(
            f"endpoint {address}: the text after ?key= is not a CURVE key "
            f"(write {address}{KEY_SUFFIX}<40 Z85 characters>, the listener's public key)"
        )
    return endpoint, None


def with_key(endpoint: str, key: str | None) -> str:
    """``endpoint`` carrying ``key`` (replacing a key it had); unchanged when key is None."""
    if key is None:
        return endpoint
    address, _ = split_key(endpoint)
    return f"{address}{KEY_SUFFIX}{check_key_text(key, 'the server key')}"


@attrs.frozen(repr=False)
class CurveKeys:
    """One side's CURVE key pair, both in Z85 text. ``repr`` hides the secret key."""

    public: str
    secret: str = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        check_key_text(self.public, "the public key")
        check_key_text(self.secret, "the secret key")
        derived = zmq.curve_public(self.secret.encode("ascii")).decode("ascii")
        if derived != self.public:
            raise InvalidKey("the public key does not belong to the secret key of this key pair")

    def __repr__(self) -> str:
        return f"CurveKeys(public={self.public!r}, secret=<hidden>)"

    @classmethod
    def generate(cls) -> CurveKeys:
        public, secret = zmq.curve_keypair()
        return cls(public.decode("ascii"), secret.decode("ascii"))

    @classmethod
    def from_secret(cls, secret: str) -> CurveKeys:
        check_key_text(secret, "the secret key")
        return cls(zmq.curve_public(secret.encode("ascii")).decode("ascii"), secret)


@attrs.frozen
class AuthRequest:
    """A question to the authorizer: may ``public_key`` use a listener of ``domain``?

    ``stage`` is ``handshake`` (the ZAP handler, before any frame),
    ``hello`` (the connection's first frame, checked again since the policy
    may have changed in between) or ``recheck`` (an open connection, after a
    policy change). ``address`` is the peer's IP address when known.
    """

    domain: str
    public_key: str
    address: str
    stage: Literal["handshake", "hello", "recheck"]


Authorizer = Callable[[AuthRequest], str | None]
"""Returns None to admit, or a one-line reason to refuse (it is logged, not sent)."""


# -- turning ZeroMQ's handshake events into messages a person can act on ---------

_MECHANISM_MISMATCH = int(getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", 0x11000002))
_CRYPTOGRAPHIC = int(getattr(zmq, "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC", 0x11000001))
HANDSHAKE_EVENTS: Final = (
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    | int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    | int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
)


def describe_connect_failure(event: int, value: int, endpoint: str, keys: CurveKeys | None) -> str:
    """One line for the connecting side whose handshake with ``endpoint`` failed.

    Which event the connecting side sees for a given cause depends on timing
    (the listener may hang up before the reason arrives), so what this side
    knows about itself decides as much as the event does.
    """
    address, _ = split_key(endpoint)
    if keys is None:
        return (
            f"the listener at {address} requires CURVE keys and this side has none: "
            "connect with a key pair and the listener's public key (endpoint?key=...)"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            f"the node at {address} refused this key ({keys.public}): not on its authorized "
            "list (or not with a role that endpoint admits); ask its operator to add the "
            "public key"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _MECHANISM_MISMATCH:
        return (
            f"the listener at {address} does not use CURVE keys and this side does: "
            "configure keys on that node, or drop ?key= from the endpoint"
        )
    return (
        f"the CURVE handshake with {address} failed: the listener did not accept this side's "
        "hello; check that the server key given for it (the endpoint's ?key=; for the CLI "
        "also --server-key or $STATESYNC_SERVER_KEY) is that node's public key (its log "
        "shows its endpoints with it) and that the node uses CURVE keys"
    )


def describe_listen_failure(event: int, value: int) -> str:
    """Why a connection to a CURVE listener failed its handshake (for the listener's log)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "its key was refused"
    if value == _MECHANISM_MISMATCH:
        return "it connected without CURVE (a peer or client with no keys configured)"
    if value == _CRYPTOGRAPHIC:
        return "its hello did not decrypt (it used a wrong server key for this node)"
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "it hung up during the handshake (most likely a peer or client with no keys configured)"
    return f"protocol error {value:#x}"


def zap_reply(msg: list[bytes], authorize: Callable[[AuthRequest], str | None]) -> list[bytes]:
    """The ZAP reply (RFC 27) to one request: 200 with the key as User-Id, or 400."""
    if len(msg) < 6:
        return [b"1.0", msg[1] if len(msg) > 1 else b"", b"400", b"malformed request", b"", b""]
    version, request_id, domain, address, _identity, mechanism = msg[:6]
    credentials = msg[6:]
    if version != b"1.0" or mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
        return [b"1.0", request_id, b"400", b"CURVE is required", b"", b""]
    key = z85.encode(credentials[0]).decode("ascii")
    request = AuthRequest(
        domain.decode("ascii", "replace"), key, address.decode("ascii", "replace"), "handshake"
    )
    reason = authorize(request)
    if reason is not None:
        return [b"1.0", request_id, b"400", reason.encode("utf-8", "replace")[:200], b"", b""]
    return [b"1.0", request_id, b"200", b"OK", key.encode("ascii"), b""]


async def serve_zap(zap: TrioSocket, authorize: Callable[[AuthRequest], str | None]) -> None:
    """Answer ZAP requests on ``zap`` (a bound REP socket) until it is closed."""
    try:
        while True:
            (request,) = await zap.recv_multipart_batch(1)
            if len(request) < 6:
                logger.warning("refused a malformed ZAP request (%d frames)", len(request))
            try:
                reply = zap_reply(request, authorize)
            except Exception:  # never leave the REP socket without its reply
                logger.exception("the ZAP handler failed on a request; refusing it")
                reply = [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"error", b"", b""]
            if not zap.try_send_multipart(reply):
                await zap.send_multipart(reply)
    except SocketClosed:
        pass
