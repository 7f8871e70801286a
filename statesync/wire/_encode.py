"""Encoding hooks: a registered message to its msgpack-ready form, checked field by field.

Each hook checks a field against its annotation and raises DataCloneError
naming where the culprit sits (``$.ops[0].value``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any, Final

import attrs
import cattrs

from statesync.core import Ops, SyncResponse
from statesync.errors import DataCloneError, RegistrationError
from statesync.wire import _fields
from statesync.wire._entryblock import encode_entries, encode_versions
from statesync.wire._fields import Kind, UnstructureHook
from statesync.wire._limits import DEFAULT_LIMITS
from statesync.wire._opblock import encode_ops
from statesync.wire._values import INT_MAX, INT_MIN, check_payload, clone_error_at


def _clone_error(value: object, expected: str) -> DataCloneError:
    return DataCloneError(
        f"{value!r:.80} is a {type(value).__qualname__}; the field holds {expected}",
        type_name=type(value).__qualname__,
    )


def _enc_str(x: object) -> object:
    if type(x) is not str:
        raise _clone_error(x, "a str")
    if len(x) * 4 > DEFAULT_LIMITS.str_bytes_max:
        check_payload(x)
    return x


def _enc_int(x: object) -> object:
    if type(x) is not int:
        raise _clone_error(x, "an int")
    if not INT_MIN <= x <= INT_MAX:
        raise _clone_error(x, "a 64-bit int")
    return x


def _enc_float(x: object) -> object:
    if type(x) is not float and type(x) is not int:
        raise _clone_error(x, "a float")
    return x


def _enc_bool(x: object) -> object:
    if type(x) is not bool:
        raise _clone_error(x, "a bool")
    return x


def _enc_bytes(x: object) -> object:
    if type(x) is not bytes:
        raise _clone_error(x, "bytes")
    if len(x) > DEFAULT_LIMITS.bin_bytes_max:
        check_payload(x)
    return x


def _enc_none(x: object) -> object:
    if x is not None:
        raise _clone_error(x, "None")
    return x


def _enc_value(x: object) -> object:
    check_payload(x)
    return x


ENC_PRIMITIVES: Final[dict[object, UnstructureHook]] = {
    str: _enc_str,
    int: _enc_int,
    float: _enc_float,
    bool: _enc_bool,
    bytes: _enc_bytes,
    _fields.NONE: _enc_none,
}


def _enc_ops(x: Any) -> object:
    if type(x) is not tuple and type(x) is not list:
        raise _clone_error(x, "a tuple of Op")
    return encode_ops(x)


def enc_op(x: Any) -> object:
    if not isinstance(x, tuple):
        raise _clone_error(x, "an Op")
    return encode_ops((x,))  # type: ignore[arg-type]


def _enc_versions(x: Any) -> object:
    if type(x) is not tuple and type(x) is not list:
        raise _clone_error(x, "a tuple of Version")
    return encode_versions(x)


def enc_version(x: Any) -> object:
    encode_versions((x,))
    return x


def _enc_entries(x: Any) -> object:
    if type(x) is not tuple and type(x) is not list:
        raise _clone_error(x, "a tuple of snapshot entries")
    return encode_entries(x)


_KIND_HOOKS: Final[dict[Kind, UnstructureHook]] = {
    Kind.NONE: _enc_none,
    Kind.VALUE: _enc_value,
    Kind.OP: enc_op,
    Kind.VERSION: enc_version,
    Kind.OPS: _enc_ops,
    Kind.VERSIONS: _enc_versions,
    Kind.ENTRIES: _enc_entries,
}
"""The hooks that depend on nothing but the field's kind."""


def unstructure_factory(conv: cattrs.Converter) -> Callable[[Any], UnstructureHook]:
    def factory(t: Any) -> UnstructureHook:
        shape = _fields.shape_of(t)
        if shape is None:
            raise RegistrationError(f"no encoder for the field type {t!r}")
        kind = shape.kind
        hook = _KIND_HOOKS.get(kind)
        if hook is not None:
            return hook
        types_ = shape.types
        if kind is Kind.PRIMITIVE:
            return ENC_PRIMITIVES[t]
        if kind is Kind.MESSAGE:
            return conv.get_unstructure_hook(t)
        if kind is Kind.OPTIONAL:
            inner = conv.get_unstructure_hook(types_[0])
            if not shape.nullable:
                return inner

            def optional(x: object) -> object:
                return None if x is None else inner(x)

            return optional
        if kind is Kind.UNION:
            by_type = {m: conv.get_unstructure_hook(m) for m in types_}
            nullable = shape.nullable
            expected = shape.expected

            def union(x: object) -> object:
                if x is None and nullable:
                    return None
                hook = by_type.get(type(x))
                if hook is None:
                    raise _clone_error(x, expected)
                return hook(x)

            return union
        if kind is Kind.SEQUENCE or kind is Kind.LIST:
            return _seq_enc(types_[0], conv.get_unstructure_hook(types_[0]))
        if kind is Kind.FIXED:
            return _fixed_tuple_enc([conv.get_unstructure_hook(a) for a in types_])
        assert kind is Kind.DICT
        return _dict_enc(types_[1], conv.get_unstructure_hook(types_[1]))

    return factory


def _seq_enc(elem: object, inner: UnstructureHook) -> UnstructureHook:
    exact = elem if elem in (str, bool, bytes) else None

    def seq(x: Any) -> object:
        if type(x) is not tuple and type(x) is not list:
            raise _clone_error(x, "a tuple")
        if exact is not None and all(type(e) is exact for e in x):
            return x
        return _enc_items(repeat(inner), x)

    return seq


def _fixed_tuple_enc(inners: list[UnstructureHook]) -> UnstructureHook:
    size = len(inners)

    def fixed(x: Any) -> object:
        if (type(x) is not tuple and type(x) is not list) or len(x) != size:
            raise _clone_error(x, f"a tuple of {size} items")
        return _enc_items(inners, x)

    return fixed


def _enc_items(hooks: Iterable[UnstructureHook], items: Sequence[Any]) -> list[object]:
    """Each item through its hook, a failure naming the item's index."""
    out = []
    for i, (hook, e) in enumerate(zip(hooks, items, strict=False)):
        try:
            out.append(hook(e))
        except DataCloneError as err:
            raise clone_error_at(err, f"[{i}]") from err
    return out


def _dict_enc(value_type: object, inner: UnstructureHook) -> UnstructureHook:
    exact = int if value_type is int else str if value_type is str else None

    def mapping(x: Any) -> object:
        if type(x) is not dict:
            raise _clone_error(x, "a dict")
        for k in x:
            if type(k) is not str:
                raise clone_error_at(_clone_error(k, "str keys"), f"[{k!r}]")
        if exact is not None and all(type(v) is exact for v in x.values()):
            if exact is int and x and not (min(x.values()) >= INT_MIN and max(x.values()) <= INT_MAX):
                raise _clone_error(x, "64-bit ints")
            return x
        out = {}
        for k, v in x.items():
            try:
                out[k] = inner(v)
            except DataCloneError as err:
                raise clone_error_at(err, f"[{k!r}]") from err
        return out

    return mapping


def class_unstructure(cls: type, conv: cattrs.Converter) -> UnstructureHook:
    tag: int = cls.TAG  # type: ignore[attr-defined]
    fields = [(f.name, conv.get_unstructure_hook(f.type)) for f in attrs.fields(cls)]

    def unstructure(msg: Any) -> list[object]:
        if type(msg) is not cls:
            raise _clone_error(msg, f"a {cls.__qualname__}")
        out: list[object] = [tag]
        for name, hook in fields:
            try:
                out.append(hook(getattr(msg, name)))
            except DataCloneError as err:
                raise clone_error_at(err, f".{name}") from err
        return out

    return unstructure


def _ops_unstructure(msg: Any) -> list[object]:
    if type(msg) is not Ops:
        raise _clone_error(msg, "an Ops")
    try:
        if msg.ack_now:  # only when set: the bytes of every other Ops stay as they were
            return [Ops.TAG, _enc_ops(msg.ops), True]
        return [Ops.TAG, _enc_ops(msg.ops)]
    except DataCloneError as err:
        raise clone_error_at(err, ".ops") from err


def _sync_response_unstructure(msg: Any) -> list[object]:
    if type(msg) is not SyncResponse:
        raise _clone_error(msg, "a SyncResponse")
    if type(msg.more) is not bool:
        raise clone_error_at(_clone_error(msg.more, "a bool"), ".more")
    try:
        return [SyncResponse.TAG, _enc_ops(msg.ops), msg.more]
    except DataCloneError as err:
        raise clone_error_at(err, ".ops") from err


HAND_UNSTRUCTURE: Final[dict[type, UnstructureHook]] = {
    Ops: _ops_unstructure,
    SyncResponse: _sync_response_unstructure,
}
