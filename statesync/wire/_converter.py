"""The one converter: protocol messages and MessagePort payloads to msgpack and back.

Messages are frozen attrs classes with a unique ``TAG: ClassVar[int]``; they
form one tagged union. A message travels as a compact msgpack array
``[TAG, field1, field2, ...]`` (fields in declaration order, no names). The
same classes serve both directions through cattrs converters built from
``cattrs.preconf.msgpack.make_converter()``: one encoding converter, whose
unstructure hooks also check each field against its annotation (raising
DataCloneError at the call, naming the field), and one decoding converter per
:class:`DecodeLimits`, whose structure hooks check every field strictly and
raise DecodeError. Hooks come from the field annotations; supported are str,
int, float, bool, bytes, None, ``Value``, ``Op``, ``Version``,
``tuple[X, ...]``, fixed tuples, ``list[X]``, ``dict[str, X]``, other
registered messages, unions of primitives and registered messages, and
Optional of all of these.

The hot types have hand-written hooks (see ``_opblock``): ``tuple[Op, ...]``
travels as a columnar op block, versions and snapshot entries as plain arrays.

Trailing fields that have defaults may be missing on decode (an older peer);
extra fields are an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
from cattrs.preconf.msgpack import make_converter

from statesync.core import MESSAGE_TYPES, Op, Value, Version
from statesync.errors import (
    DataCloneError,
    DecodeError,
    RegistrationError,
)
from statesync.wire._decode import Decoder
from statesync.wire._encode import (
    ENC_PRIMITIVES,
    HAND_UNSTRUCTURE,
    class_unstructure,
    enc_op,
    enc_version,
    unstructure_factory,
)
from statesync.wire._fields import BY_CLASS, BY_TAG, UnstructureHook, check_supported, is_registered
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits
from statesync.wire._msgpack import frame_too_large, pack_checked, packb, undecodable, unpack
from statesync.wire._values import check_payload, fix_value

__all__ = [
    "TAG_MAX",
    "TAG_MIN",
    "decode_message",
    "decode_payload",
    "encode_message",
    "encode_payload",
    "pack_checked",
    "packb",
    "register_message",
    "registered_messages",
    "structure_message",
    "unpack",
    "unregister_message",
    "unstructure_message",
]

_T = TypeVar("_T")

TAG_MIN: Final = 1
TAG_MAX: Final = 127
"""Tags fit one msgpack byte. By convention 1-31 core, 32-63 ports, 64-127 node."""


# ---------------------------------------------------------------- registry


_lock = threading.RLock()
_ENCODER = make_converter(detailed_validation=False)
_ENCODER.register_unstructure_hook_factory(lambda t: not is_registered(t), unstructure_factory(_ENCODER))
for _t, _hook in ENC_PRIMITIVES.items():
    _ENCODER.register_unstructure_hook(_t, _hook)
_ENCODER.register_unstructure_hook(Op, enc_op)
_ENCODER.register_unstructure_hook(Version, enc_version)
_UNSTRUCTURE: dict[type, UnstructureHook] = {}
"""type(msg) -> hook; the fast path of encode_message, filled at registration."""
_DECODERS: dict[int, tuple[DecodeLimits, Decoder]] = {}
_DECODERS_BY_VALUE: dict[DecodeLimits, Decoder] = {}
_DECODERS_MAX: Final = 64


def register_message(cls: type) -> None:
    """Add ``cls`` to the tagged union of messages.

    ``cls`` is an attrs frozen class with a unique int ``TAG: ClassVar[int]``
    from 1 to 127 (by convention 1-31 core, 32-63 ports, 64-127 node), whose
    fields are of the supported types (see the module docstring); a message
    class used as a field must be registered first. Registering the same
    class again does nothing. Raises RegistrationError.
    """
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise RegistrationError(f"{cls!r} is not an attrs class; decorate it with @attrs.frozen")
    if getattr(cls.__setattr__, "__name__", "") != "_frozen_setattrs":
        raise RegistrationError(f"{cls.__qualname__} is not frozen; use @attrs.frozen")
    tag = cls.__dict__.get("TAG")
    if type(tag) is not int or not TAG_MIN <= tag <= TAG_MAX:
        raise RegistrationError(
            f"{cls.__qualname__} needs TAG: ClassVar[int] = <{TAG_MIN}..{TAG_MAX}> in its own body, not {tag!r}"
        )
    with _lock:
        known = BY_TAG.get(tag)
        if known is cls:
            return
        if known is not None:
            raise RegistrationError(
                f"TAG {tag} of {cls.__qualname__} is taken by {known.__module__}.{known.__qualname__}; pick another"
            )
        try:
            attrs.resolve_types(cls)
        except Exception as e:
            raise RegistrationError(
                f"cannot resolve the field annotations of {cls.__qualname__}: {e}; "
                "import the names they use at module level"
            ) from e
        for f in attrs.fields(cls):
            check_supported(f.type, f"{cls.__qualname__}.{f.name}")
        BY_TAG[tag] = cls
        BY_CLASS[cls] = tag
        try:
            hook = HAND_UNSTRUCTURE.get(cls) or class_unstructure(cls, _ENCODER)
            _ENCODER.register_unstructure_hook(cls, hook)
            _UNSTRUCTURE[cls] = hook
            _DECODERS.clear()
            _DECODERS_BY_VALUE.clear()
            _decoder(DEFAULT_LIMITS)  # builds every hook now, so errors surface here
        except Exception as e:
            del BY_TAG[tag], BY_CLASS[cls]
            _UNSTRUCTURE.pop(cls, None)
            _DECODERS.clear()
            _DECODERS_BY_VALUE.clear()
            raise RegistrationError(f"cannot register {cls.__qualname__}: {e}") from e


def unregister_message(cls: type) -> None:
    """Remove ``cls`` from the tagged union (for tests); core messages stay. Unknown classes: no-op."""
    if cls in MESSAGE_TYPES:
        raise RegistrationError(f"{cls.__qualname__} is a core message; it cannot be unregistered")
    with _lock:
        tag = BY_CLASS.pop(cls, None)
        if tag is None:
            return
        del BY_TAG[tag]
        _UNSTRUCTURE.pop(cls, None)
        _DECODERS.clear()
        _DECODERS_BY_VALUE.clear()


def registered_messages() -> dict[int, type]:
    """The tagged union: tag -> message class."""
    return dict(BY_TAG)


def _decoder(limits: DecodeLimits) -> Decoder:
    """The decoder for ``limits``: by identity (fast), else by value (equal limits share one)."""
    entry = _DECODERS.get(id(limits))
    if entry is not None and entry[0] is limits:
        return entry[1]
    with _lock:
        dec = _DECODERS_BY_VALUE.get(limits)
        if dec is None:
            if len(_DECODERS_BY_VALUE) >= _DECODERS_MAX:
                _DECODERS_BY_VALUE.clear()
            dec = Decoder(limits, list(BY_TAG.values()))
            _DECODERS_BY_VALUE[limits] = dec
        if len(_DECODERS) >= _DECODERS_MAX:
            _DECODERS.clear()
        _DECODERS[id(limits)] = (limits, dec)  # holding limits keeps its id from being reused
        return dec


# ---------------------------------------------------------------- public API


def unstructure_message(msg: object) -> list[object]:
    """The msgpack-ready form of a registered message; raise DataCloneError."""
    hook = _UNSTRUCTURE.get(type(msg))
    if hook is None:
        raise DataCloneError(
            f"{type(msg).__qualname__} is not a registered message; register_message() it first",
            type_name=type(msg).__qualname__,
        )
    return hook(msg)  # type: ignore[no-any-return]


def encode_message(msg: object) -> bytes:
    """One registered message as bytes (unframed): ``[TAG, field1, ...]``; raise DataCloneError."""
    return pack_checked(unstructure_message(msg), msg)


def structure_message(obj: object, limits: DecodeLimits) -> object:
    """Build the message an unpacked object describes; raise DecodeError."""
    try:
        return _decoder(limits).message(obj)
    except DecodeError:
        raise
    except Exception as e:
        raise undecodable(e, "message", limits) from e


def decode_message(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> object:
    """Decode one unframed message; raise DecodeError (and nothing else)."""
    return _decode_bytes(data, limits, "message", structure_message)


def _decode_bytes(data: bytes, limits: DecodeLimits, what: str, build: Callable[[Any, DecodeLimits], _T]) -> _T:
    """Unpack ``data`` (a ``what``) within ``limits`` and ``build`` the result; raise DecodeError only."""
    try:
        size = len(data)
        if size > limits.frame_bytes_max:
            raise frame_too_large(size, limits, what)
        return build(unpack(data, limits), limits)
    except DecodeError:
        raise
    except Exception as e:
        raise undecodable(e, what, limits) from e


def encode_payload(data: object) -> bytes:
    """A MessagePort payload as bytes (a copy); raise DataCloneError at the call.

    Payloads are None, bool, int (64-bit), float, str, bytes, list, tuple
    (sent as a list) and dict with str keys, nested up to ``depth_max``, each
    within the default DecodeLimits (what a peer accepts). Anything else
    (functions, sockets, sets, arbitrary objects, subclasses) raises
    DataCloneError naming the type and where it sits, e.g. ``$['a'][2]``.
    """
    check_payload(data)
    out = pack_checked(data, data)
    if len(out) > DEFAULT_LIMITS.frame_bytes_max:
        raise DataCloneError(
            f"the payload encodes to {len(out)} bytes; frame_bytes_max is {DEFAULT_LIMITS.frame_bytes_max}; "
            "send it in parts",
            type_name=type(data).__qualname__,
            limit="frame_bytes_max",
        )
    return out


def decode_payload(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Value:
    """Decode a payload made by encode_payload; raise DecodeError (and nothing else).

    Lists come back as lists (tuples were sent as lists).
    """
    return _decode_bytes(data, limits, "payload", fix_value)


for _cls in MESSAGE_TYPES:
    register_message(_cls)
