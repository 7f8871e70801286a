"""Decoding hooks: an unpacked msgpack object to a message, checked strictly.

One :class:`Decoder` per :class:`DecodeLimits`; every hook raises DecodeError
naming where the offending field sits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, Final

import attrs
from cattrs.preconf.msgpack import make_converter

from statesync.core import Op, Ops, SyncResponse, Version
from statesync.errors import (
    DecodeError,
    MalformedFrame,
    RegistrationError,
    UnknownMessageType,
    WrongType,
)
from statesync.wire import _fields
from statesync.wire._entryblock import decode_entries, decode_version, decode_versions
from statesync.wire._fields import Kind, Shape, StructureHook
from statesync.wire._limits import DecodeLimits
from statesync.wire._opblock import decode_op, decode_ops
from statesync.wire._values import fix_value


def _wrong(value: object, expected: str) -> WrongType:
    return WrongType(
        f"expected {expected}, got {type(value).__name__} {value!r:.60}",
        limit="type",
        bound=expected,
        value=type(value).__name__,
    )


def _dec_exact(t: type, name: str) -> StructureHook:
    """The hook of a primitive that decodes to exactly ``t`` (msgpack's own types)."""

    def hook(x: Any, _: Any) -> Any:
        if type(x) is not t:
            raise _wrong(x, name)
        return x

    return hook


def _dec_float(x: Any, _: Any) -> Any:
    t = type(x)
    if t is float:
        return x
    if t is int:
        return float(x)
    raise _wrong(x, "float")


def _dec_none(x: Any, _: Any) -> Any:
    if x is not None:
        raise _wrong(x, "nil")
    return x


_DEC_PRIMITIVES: Final[dict[object, StructureHook]] = {
    str: _dec_exact(str, "str"),
    int: _dec_exact(int, "int"),
    float: _dec_float,
    bool: _dec_exact(bool, "bool"),
    bytes: _dec_exact(bytes, "bytes"),
    _fields.NONE: _dec_none,
}


_BY_KIND: Final[dict[Kind, Callable[[Any, DecodeLimits], Any]]] = {
    Kind.VALUE: fix_value,
    Kind.OP: decode_op,
    Kind.VERSION: decode_version,
    Kind.OPS: decode_ops,
    Kind.VERSIONS: decode_versions,
    Kind.ENTRIES: decode_entries,
}
"""The kinds decoded by a function of the data and the limits."""


class Decoder:
    """A decoding converter bound to one DecodeLimits, with its tag table."""

    def __init__(self, limits: DecodeLimits, classes: list[type]) -> None:
        self.limits = limits
        self.converter = conv = make_converter(detailed_validation=False)
        for t, hook in _DEC_PRIMITIVES.items():
            conv.register_structure_hook(t, hook)
        conv.register_structure_hook(Op, lambda x, _: decode_op(x, limits))
        conv.register_structure_hook(Version, lambda x, _: decode_version(x, limits))
        conv.register_structure_hook_factory(lambda t: True, self._factory)
        for cls in classes:
            conv.register_structure_hook(cls, self._class_hook(cls))
        conv.register_structure_hook(Ops, self._ops_hook)
        conv.register_structure_hook(SyncResponse, self._sync_response_hook)
        self.by_tag: dict[int, tuple[type, StructureHook]] = {
            cls.TAG: (cls, conv.get_structure_hook(cls))  # type: ignore[attr-defined]
            for cls in classes
        }

    def message(self, obj: Any) -> object:
        if type(obj) is not tuple or not obj:
            raise MalformedFrame(
                f"a message is an array [tag, fields...], not {type(obj).__name__}",
                limit="format",
                bound="array",
                value=type(obj).__name__,
            )
        tag = obj[0]
        entry = self.by_tag.get(tag) if type(tag) is int else None
        if entry is None:
            raise UnknownMessageType(
                f"unknown message tag {tag!r}; the peer speaks a newer or different protocol",
                limit="tag",
                bound=sorted(self.by_tag),
                value=tag,
            )
        return entry[1](obj, entry[0])

    def _factory(self, t: Any) -> StructureHook:
        limits = self.limits
        conv = self.converter
        shape = _fields.shape_of(t)
        if shape is None or shape.kind is Kind.MESSAGE:
            raise RegistrationError(f"no decoder for the field type {t!r}")
        kind = shape.kind
        types_ = shape.types
        if kind is Kind.PRIMITIVE:
            return _DEC_PRIMITIVES[t]
        if kind is Kind.NONE:
            return _dec_none
        decode = _BY_KIND.get(kind)
        if decode is not None:
            return lambda x, _: decode(x, limits)
        if kind is Kind.OPTIONAL:
            member = types_[0]
            inner = conv.get_structure_hook(member)
            if not shape.nullable:
                return inner

            def optional(x: Any, _: Any) -> Any:
                return None if x is None else inner(x, member)

            return optional
        if kind is Kind.UNION:
            return self._union_hook(shape)
        if kind is Kind.SEQUENCE or kind is Kind.LIST:
            return _seq_dec(types_[0], conv.get_structure_hook(types_[0]), kind is Kind.LIST)
        if kind is Kind.FIXED:
            return _fixed_tuple_dec(types_, [conv.get_structure_hook(a) for a in types_])
        assert kind is Kind.DICT
        return _dict_dec(types_[1], conv.get_structure_hook(types_[1]))

    def _union_hook(self, shape: Shape) -> StructureHook:
        conv = self.converter
        members = shape.types
        nullable = shape.nullable
        prims = {m: _DEC_PRIMITIVES[m] for m in members if m in _DEC_PRIMITIVES}
        tagged = {m.TAG: m for m in members if _fields.is_registered(m)}
        expected = shape.expected

        def union(x: Any, _: Any) -> Any:
            if x is None and nullable:
                return None
            tx = type(x)
            if tx in prims:
                return x
            if tx is int and float in prims:
                return float(x)
            if tx is tuple and x and type(x[0]) is int and x[0] in tagged:
                cls = tagged[x[0]]
                return conv.get_structure_hook(cls)(x, cls)
            raise _wrong(x, expected)

        return union

    def _class_hook(self, cls: type) -> StructureHook:
        tag: int = cls.TAG  # type: ignore[attr-defined]
        afields = attrs.fields(cls)
        fields = [(f.name, self.converter.get_structure_hook(f.type), f.type) for f in afields]
        total = len(fields)
        required = sum(1 for f in afields if f.default is attrs.NOTHING)
        name = cls.__qualname__

        def structure(obj: Any, _: Any) -> Any:
            if type(obj) is not tuple or not obj or type(obj[0]) is not int or obj[0] != tag:
                raise _wrong(obj, f"a {name} message [{tag}, ...]")
            given = len(obj) - 1
            if not required <= given <= total:
                raise MalformedFrame(
                    f"a {name} message has {given} fields; it has {required} to {total}",
                    limit="format",
                    bound=(required, total),
                    value=given,
                )
            args = []
            for (fname, hook, ftype), value in zip(fields, obj[1:], strict=False):
                try:
                    args.append(hook(value, ftype))
                except DecodeError as e:
                    raise e.at(f".{fname}") from e
            return cls(*args)

        return structure

    def _ops_hook(self, obj: Any, _: Any) -> Any:
        return Ops(*self._ops_and_flag(obj, Ops.TAG, "an Ops message is [4, ops] or [4, ops, ack_now]", "ack_now"))

    def _sync_response_hook(self, obj: Any, _: Any) -> Any:
        return SyncResponse(*self._ops_and_flag(obj, SyncResponse.TAG, "a SyncResponse message is [7, ops, more]", "more"))

    def _ops_and_flag(self, obj: Any, tag: int, shape: str, flag: str) -> tuple[tuple[Op, ...], bool]:
        """The two fields of a message ``[tag, ops]`` or ``[tag, ops, flag]`` (the flag a bool, False when absent)."""
        if type(obj) is not tuple or len(obj) not in (2, 3) or obj[0] != tag:
            raise MalformedFrame(shape, limit="format", bound=3, value=obj)
        value = obj[2] if len(obj) == 3 else False
        if type(value) is not bool:
            raise _wrong(value, "bool").at(f".{flag}")
        try:
            return decode_ops(obj[1], self.limits), value
        except DecodeError as e:
            raise e.at(".ops") from e


def _seq_dec(elem: object, inner: StructureHook, as_list: bool) -> StructureHook:
    exact = elem if elem in (str, int, bool, bytes) else None

    def seq(x: Any, _: Any) -> Any:
        if type(x) is not tuple:
            raise _wrong(x, "an array")
        if exact is not None and all(type(e) is exact for e in x):
            return list(x) if as_list else x
        out = _dec_items(repeat(inner), repeat(elem), x)
        return out if as_list else tuple(out)

    return seq


def _fixed_tuple_dec(types_: tuple[Any, ...], inners: list[StructureHook]) -> StructureHook:
    size = len(inners)

    def fixed(x: Any, _: Any) -> Any:
        if type(x) is not tuple or len(x) != size:
            raise _wrong(x, f"an array of {size} items")
        return tuple(_dec_items(inners, types_, x))

    return fixed


def _dec_items(hooks: Iterable[StructureHook], types_: Iterable[Any], items: tuple[Any, ...]) -> list[Any]:
    """Each item through its hook (given its type), a failure naming the item's index."""
    out = []
    for i, (hook, t, e) in enumerate(zip(hooks, types_, items, strict=False)):
        try:
            out.append(hook(e, t))
        except DecodeError as err:
            raise err.at(f"[{i}]") from err
    return out


def _dict_dec(value_type: object, inner: StructureHook) -> StructureHook:
    exact = value_type if value_type in (str, int, bool, bytes) else None

    def mapping(x: Any, _: Any) -> Any:
        if type(x) is not dict:
            raise _wrong(x, "a map")
        for k in x:
            if type(k) is not str:
                raise _wrong(k, "str map keys")
        if exact is not None and all(type(v) is exact for v in x.values()):
            return x
        out = {}
        for k, v in x.items():
            try:
                out[k] = inner(v, value_type)
            except DecodeError as err:
                raise err.at(f"[{k!r}]") from err
        return out

    return mapping
