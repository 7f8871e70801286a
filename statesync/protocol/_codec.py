"""Requests and replies to and from the dicts that travel on a port, with cattrs.

Both sides decode at the edge: the node with :func:`decode_request` (a
malformed request raises :class:`~statesync.errors.BadRequest` naming the
field, or :class:`~statesync.errors.InvalidPath`, never anything else), a
client with :func:`decode_reply` (an error reply raises the error its code
maps to; an answer it cannot read raises :class:`~statesync.errors.ProtocolError`).

Decoding first runs a converter without detailed validation (the common,
well-formed case stays fast); only when it fails does a second, detailed one
find the field to name.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import cattrs
from cattrs.errors import AttributeValidationNote, IterableValidationNote

from statesync.core import Path, Value, as_path, format_path
from statesync.errors import BadRequest, InvalidPath, ProtocolError, StatesyncError
from statesync.protocol._codes import error_from_reply
from statesync.protocol._messages import (
    REQUESTS,
    Ack,
    IdemKey,
    Request,
    check_ack,
    check_key,
    check_timeout,
)

R = TypeVar("R")

_PATH: Final = tuple[str, ...]
_TIMEOUT: Final = float | None


def _is_value(t: object) -> bool:
    """Whether ``t`` is the ``Value`` union (resolved annotations hold forward references)."""
    args = getattr(t, "__args__", ())
    return bytes in args and type(None) in args and str in args


def _is_items(t: object) -> bool:
    """Whether ``t`` is ``tuple[tuple[Path, Value], ...]`` (SetMany.items)."""
    args = typing.get_args(t)
    return typing.get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis and typing.get_origin(args[0]) is tuple


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _path(value: object, _: object) -> Path:
    if isinstance(value, str):
        return as_path(value)
    if isinstance(value, list | tuple):
        return as_path(tuple(value))
    raise BadRequest(f"a path is text like 'a.b.c' or a list of segments, not {_type_name(value)}")


def _items(value: object, _: object) -> tuple[tuple[Path, Value], ...]:
    if not isinstance(value, list | tuple):
        raise BadRequest(f"items must be a list of [path, value] pairs, not {_type_name(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise BadRequest(f"items[{i}] must be a [path, value] pair")
        out.append((_path(item[0], None), item[1]))
    return tuple(out)


def _strict(kind: type, name: str) -> Callable[[object, object], Any]:
    def structure(value: object, _: object) -> Any:
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise BadRequest(f"expected {name}, not {_type_name(value)}")

    return structure


def _timeout(value: object, _: object) -> float | None:
    if value is None or type(value) in (int, float):
        return check_timeout(value)
    raise BadRequest(f"expected a number of seconds, not {_type_name(value)}")


def _ack(value: object, _: object) -> Ack:
    return check_ack(value)


def _key(value: object, _: object) -> IdemKey | None:
    return None if value is None else check_key(value)


_KEY: Final = IdemKey | None


def _converter(detailed: bool) -> cattrs.Converter:
    c = cattrs.Converter(detailed_validation=detailed)
    c.register_structure_hook_func(lambda t: t == _PATH, _path)
    c.register_structure_hook_func(_is_items, _items)
    c.register_structure_hook_func(_is_value, lambda v, _: v)
    c.register_structure_hook_func(lambda t: t == Ack, _ack)
    c.register_structure_hook_func(lambda t: t == _TIMEOUT, _timeout)
    c.register_structure_hook_func(lambda t: t == _KEY, _key)
    c.register_unstructure_hook(IdemKey, lambda k: [k.client, k.seq])
    c.register_structure_hook(str, _strict(str, "text"))
    c.register_structure_hook(int, _strict(int, "an integer"))
    c.register_structure_hook(float, _strict(float, "a number"))
    c.register_structure_hook(bool, _strict(bool, "true or false"))
    c.register_unstructure_hook_func(lambda t: t == _PATH, format_path)
    c.register_unstructure_hook_func(_is_items, lambda items: [[format_path(p), v] for p, v in items])
    c.register_unstructure_hook_func(_is_value, lambda v: v)
    return c


_FAST: Final = _converter(detailed=False)
_DETAILED: Final = _converter(detailed=True)


def _leaf(exc: BaseException, where: str) -> tuple[str, BaseException]:
    """The first innermost error of a cattrs validation error, and the field it is at."""
    if isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
        sub = exc.exceptions[0]
        name = ""
        for note in getattr(sub, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                name = f".{note.name}"
            elif isinstance(note, IterableValidationNote):
                name = f"[{note.index!r}]"
        return _leaf(sub, where + name)
    return where.lstrip("."), exc


def _bad(op: str, where: str, exc: BaseException) -> StatesyncError:
    if isinstance(exc, InvalidPath | BadRequest) and where == "":
        return exc
    if isinstance(exc, InvalidPath):
        return InvalidPath(f"{where}: {exc}")
    if isinstance(exc, KeyError):
        return BadRequest(f"bad {op} request: the field {where!r} is missing")
    detail = str(exc) if isinstance(exc, StatesyncError) else f"{type(exc).__name__}: {exc}"
    return BadRequest(f"bad {op} request: field {where!r}: {detail}" if where else f"bad {op} request: {detail}")


def decode_request(data: object) -> Request:
    """The request ``data`` holds (``{"op": ..., ...}``); BadRequest or InvalidPath if malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("op"), str):
        raise BadRequest("a request is a dict with an 'op' naming it, like {'op': 'get', 'path': 'a.b'}")
    op: str = data["op"]
    cls = REQUESTS.get(op)
    if cls is None:
        raise BadRequest(f"unknown request {op[:64]!r}; known: {', '.join(sorted(REQUESTS))}")
    try:
        request: Request = _FAST.structure(data, cls)
    except InvalidPath:
        raise
    except Exception:
        try:
            request = _DETAILED.structure(data, cls)
        except Exception as exc:
            where, leaf = _leaf(exc, "")
            raise _bad(op, where, leaf) from exc
    return request


def encode_request(request: Request) -> dict[str, Any]:
    """The dict that carries ``request`` on a port."""
    return {"op": request.OP, **_FAST.unstructure(request)}


def encode_reply(reply: object) -> dict[str, Any]:
    """The dict that carries a successful ``reply``: ``{"ok": True, <fields>}``."""
    return {"ok": True, **_FAST.unstructure(reply)}


def decode_reply(data: object, cls: type[R], *, prefix: str = "") -> R:
    """The reply ``data`` holds, or raise the error an error reply carries (``prefix`` first)."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{prefix}the node sent an answer this client does not understand (not a dict)")
    if not data.get("ok"):
        raise error_from_reply(data, prefix=prefix)
    try:
        return _FAST.structure(data, cls)
    except Exception:
        try:
            _DETAILED.structure(data, cls)
        except Exception as exc:
            where, leaf = _leaf(exc, "")
            raise ProtocolError(
                f"{prefix}the node sent a {cls.__name__} this client does not understand ({where or 'reply'}: {leaf}); "
                "use the same statesync version on both sides"
            ) from exc
        raise  # pragma: no cover  (the detailed converter accepted what the fast one refused)
