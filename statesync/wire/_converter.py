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

import re
import threading
import types
import typing
from collections.abc import Callable
from typing import Any, Final, Union

import attrs
import cattrs
import msgpack
from cattrs.preconf.msgpack import make_converter

from statesync.core import MESSAGE_TYPES, Op, Ops, SyncResponse, Value, Version
from statesync.wire import _opblock
from statesync.wire._errors import (
    BytesTooLong,
    ContainerTooLong,
    DataCloneError,
    DecodeError,
    FrameTooLarge,
    MalformedFrame,
    NestingTooDeep,
    RegistrationError,
    StringTooLong,
    UnknownMessageType,
    WrongType,
)
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits
from statesync.wire._values import INT_MAX, INT_MIN, check_payload, find_unencodable_str, fix_value

TAG_MIN: Final = 1
TAG_MAX: Final = 127
"""Tags fit one msgpack byte. By convention 1-31 core, 32-63 ports, 64-127 node."""

UnstructureHook = Callable[[Any], Any]
StructureHook = Callable[[Any, Any], Any]

_NONE: Final = type(None)
_PRIMITIVES: Final = (str, int, float, bool, bytes, _NONE)
_VALUE_MEMBERS: Final = frozenset({bool, int, float, str, bytes, list, dict, _NONE})
_SNAPSHOT_ENTRY: Final = tuple[tuple[str, ...], tuple[Version, ...]]


# ---------------------------------------------------------------- field types


def _is_union(t: object) -> bool:
    return typing.get_origin(t) in (Union, types.UnionType)


def _is_value_type(t: object) -> bool:
    """``Value`` itself, or what annotation resolution makes of it (and of ``Value | None``)."""
    if t is Value:
        return True
    if not _is_union(t):
        return False
    return {typing.get_origin(a) or a for a in typing.get_args(t)} == _VALUE_MEMBERS


def _is_registered(t: object) -> bool:
    return isinstance(t, type) and t in _BY_CLASS


def _check_supported(t: object, where: str) -> None:
    """Raise RegistrationError unless the hooks below can handle ``t``."""
    if t in _PRIMITIVES or t is None or t is Op or t is Version or _is_value_type(t) or _is_registered(t):
        return
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if _is_union(t):
        members = [a for a in args if a is not _NONE]
        if len(members) == 1:
            _check_supported(members[0], where)
            return
        for m in members:
            if not (m in _PRIMITIVES or _is_registered(m)):
                raise RegistrationError(
                    f"{where}: the union {t!r} mixes {m!r} in; unions may hold only str, int, float, "
                    "bool, bytes, None and registered messages (or use Optional[X])"
                )
        return
    if origin is tuple and args:
        for a in args[:1] if len(args) == 2 and args[1] is Ellipsis else args:
            _check_supported(a, where)
        return
    if origin is list and len(args) == 1:
        _check_supported(args[0], where)
        return
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise RegistrationError(f"{where}: dict keys must be str, not {args[0]!r}")
        _check_supported(args[1], where)
        return
    if attrs.has(t) if isinstance(t, type) else False:
        raise RegistrationError(f"{where}: the attrs class {t!r} is not registered; register_message() it first")
    raise RegistrationError(
        f"{where}: the field type {t!r} is not supported; use str, int, float, bool, bytes, None, "
        "Value, Op, Version, tuple, list, dict[str, X], registered messages or Optional of these"
    )


# ---------------------------------------------------------------- encoding hooks


def _clone_error(value: object, expected: str) -> DataCloneError:
    return DataCloneError(
        f"{value!r:.80} is a {type(value).__qualname__}; the field holds {expected}",
        type_name=type(value).__qualname__,
    )


def _at(e: DataCloneError, prefix: str) -> DataCloneError:
    e.where = "$" + prefix + e.where[1:]
    return e


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


_ENC_PRIMITIVES: Final[dict[object, UnstructureHook]] = {
    str: _enc_str,
    int: _enc_int,
    float: _enc_float,
    bool: _enc_bool,
    bytes: _enc_bytes,
    _NONE: _enc_none,
}


def _enc_ops(x: Any) -> object:
    if type(x) is not tuple and type(x) is not list:
        raise _clone_error(x, "a tuple of Op")
    return _opblock.encode_ops(x)


def _enc_op(x: Any) -> object:
    if not isinstance(x, tuple):
        raise _clone_error(x, "an Op")
    return _opblock.encode_ops((x,))  # type: ignore[arg-type]


def _enc_versions(x: Any) -> object:
    if type(x) is not tuple and type(x) is not list:
        raise _clone_error(x, "a tuple of Version")
    return _opblock.encode_versions(x)


def _enc_version(x: Any) -> object:
    _opblock.encode_versions((x,))
    return x


def _enc_entries(x: Any) -> object:
    if type(x) is not tuple and type(x) is not list:
        raise _clone_error(x, "a tuple of snapshot entries")
    return _opblock.encode_entries(x)


def _unstructure_factory(conv: cattrs.Converter) -> Callable[[Any], UnstructureHook]:
    def factory(t: Any) -> UnstructureHook:
        if t in _ENC_PRIMITIVES:
            return _ENC_PRIMITIVES[t]
        if t is None:
            return _enc_none
        if _is_value_type(t):
            return _enc_value
        if t is Op:
            return _enc_op
        if t is Version:
            return _enc_version
        args = typing.get_args(t)
        if _is_union(t):
            members = [a for a in args if a is not _NONE]
            nullable = len(members) < len(args)
            if len(members) == 1:
                inner = conv.get_unstructure_hook(members[0])

                def optional(x: object) -> object:
                    return None if x is None else inner(x)

                return optional if nullable else inner
            by_type = {m: conv.get_unstructure_hook(m) for m in members}
            expected = " or ".join(getattr(m, "__name__", str(m)) for m in args)

            def union(x: object) -> object:
                if x is None and nullable:
                    return None
                hook = by_type.get(type(x))
                if hook is None:
                    raise _clone_error(x, expected)
                return hook(x)

            return union
        origin = typing.get_origin(t)
        if origin is tuple or origin is list:
            if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                elem = args[0]
                if elem is Op:
                    return _enc_ops
                if elem is Version:
                    return _enc_versions
                if elem == _SNAPSHOT_ENTRY:
                    return _enc_entries
            elif origin is list:
                elem = args[0]
            else:
                return _fixed_tuple_enc([conv.get_unstructure_hook(a) for a in args])
            return _seq_enc(elem, conv.get_unstructure_hook(elem))
        if origin is dict:
            return _dict_enc(args[1], conv.get_unstructure_hook(args[1]))
        if _is_registered(t):
            return conv.get_unstructure_hook(t)
        raise RegistrationError(f"no encoder for the field type {t!r}")

    return factory


def _seq_enc(elem: object, inner: UnstructureHook) -> UnstructureHook:
    exact = elem if elem in (str, bool, bytes) else None

    def seq(x: Any) -> object:
        if type(x) is not tuple and type(x) is not list:
            raise _clone_error(x, "a tuple")
        if exact is not None and all(type(e) is exact for e in x):
            return x
        out = []
        for i, e in enumerate(x):
            try:
                out.append(inner(e))
            except DataCloneError as err:
                raise _at(err, f"[{i}]") from None
        return out

    return seq


def _fixed_tuple_enc(inners: list[UnstructureHook]) -> UnstructureHook:
    size = len(inners)

    def fixed(x: Any) -> object:
        if (type(x) is not tuple and type(x) is not list) or len(x) != size:
            raise _clone_error(x, f"a tuple of {size} items")
        out = []
        for i, (hook, e) in enumerate(zip(inners, x, strict=True)):
            try:
                out.append(hook(e))
            except DataCloneError as err:
                raise _at(err, f"[{i}]") from None
        return out

    return fixed


def _dict_enc(value_type: object, inner: UnstructureHook) -> UnstructureHook:
    exact = int if value_type is int else str if value_type is str else None

    def mapping(x: Any) -> object:
        if type(x) is not dict:
            raise _clone_error(x, "a dict")
        for k in x:
            if type(k) is not str:
                raise _at(_clone_error(k, "str keys"), f"[{k!r}]")
        if exact is not None and all(type(v) is exact for v in x.values()):
            if exact is int and x and not (min(x.values()) >= INT_MIN and max(x.values()) <= INT_MAX):
                raise _clone_error(x, "64-bit ints")
            return x
        out = {}
        for k, v in x.items():
            try:
                out[k] = inner(v)
            except DataCloneError as err:
                raise _at(err, f"[{k!r}]") from None
        return out

    return mapping


def _class_unstructure(cls: type, conv: cattrs.Converter) -> UnstructureHook:
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
                raise _at(err, f".{name}") from None
        return out

    return unstructure


def _ops_unstructure(msg: Any) -> list[object]:
    if type(msg) is not Ops:
        raise _clone_error(msg, "an Ops")
    try:
        return [Ops.TAG, _enc_ops(msg.ops)]
    except DataCloneError as err:
        raise _at(err, ".ops") from None


def _sync_response_unstructure(msg: Any) -> list[object]:
    if type(msg) is not SyncResponse:
        raise _clone_error(msg, "a SyncResponse")
    if type(msg.more) is not bool:
        raise _at(_clone_error(msg.more, "a bool"), ".more")
    try:
        return [SyncResponse.TAG, _enc_ops(msg.ops), msg.more]
    except DataCloneError as err:
        raise _at(err, ".ops") from None


_HAND_UNSTRUCTURE: Final[dict[type, UnstructureHook]] = {
    Ops: _ops_unstructure,
    SyncResponse: _sync_response_unstructure,
}


# ---------------------------------------------------------------- decoding hooks


def _wrong(value: object, expected: str) -> WrongType:
    return WrongType(
        f"expected {expected}, got {type(value).__name__} {value!r:.60}",
        limit="type",
        bound=expected,
        value=type(value).__name__,
    )


def _dec_str(x: Any, _: Any) -> Any:
    if type(x) is not str:
        raise _wrong(x, "str")
    return x


def _dec_int(x: Any, _: Any) -> Any:
    if type(x) is not int:
        raise _wrong(x, "int")
    return x


def _dec_float(x: Any, _: Any) -> Any:
    t = type(x)
    if t is float:
        return x
    if t is int:
        return float(x)
    raise _wrong(x, "float")


def _dec_bool(x: Any, _: Any) -> Any:
    if type(x) is not bool:
        raise _wrong(x, "bool")
    return x


def _dec_bytes(x: Any, _: Any) -> Any:
    if type(x) is not bytes:
        raise _wrong(x, "bytes")
    return x


def _dec_none(x: Any, _: Any) -> Any:
    if x is not None:
        raise _wrong(x, "nil")
    return x


_DEC_PRIMITIVES: Final[dict[object, StructureHook]] = {
    str: _dec_str,
    int: _dec_int,
    float: _dec_float,
    bool: _dec_bool,
    bytes: _dec_bytes,
    _NONE: _dec_none,
}


class _Decoder:
    """A decoding converter bound to one DecodeLimits, with its tag table."""

    def __init__(self, limits: DecodeLimits, classes: list[type]) -> None:
        self.limits = limits
        self.converter = conv = make_converter(detailed_validation=False)
        for t, hook in _DEC_PRIMITIVES.items():
            conv.register_structure_hook(t, hook)
        conv.register_structure_hook(Op, lambda x, _: _opblock.decode_op(x, limits))
        conv.register_structure_hook(Version, lambda x, _: _opblock.decode_version(x, limits))
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
        if t in _DEC_PRIMITIVES:
            return _DEC_PRIMITIVES[t]
        if t is None:
            return _dec_none
        if _is_value_type(t):
            return lambda x, _: fix_value(x, limits)
        if t is Op:
            return lambda x, _: _opblock.decode_op(x, limits)
        if t is Version:
            return lambda x, _: _opblock.decode_version(x, limits)
        args = typing.get_args(t)
        if _is_union(t):
            members = [a for a in args if a is not _NONE]
            nullable = len(members) < len(args)
            if len(members) == 1:
                inner = conv.get_structure_hook(members[0])
                member = members[0]

                def optional(x: Any, _: Any) -> Any:
                    return None if x is None else inner(x, member)

                return optional if nullable else inner
            prims = {m: _DEC_PRIMITIVES[m] for m in members if m in _DEC_PRIMITIVES}
            tagged = {m.TAG: m for m in members if _is_registered(m)}
            expected = " or ".join(getattr(m, "__name__", str(m)) for m in args)

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
        origin = typing.get_origin(t)
        if origin is tuple or origin is list:
            if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                elem = args[0]
                if elem is Op:
                    return lambda x, _: _opblock.decode_ops(x, limits)
                if elem is Version:
                    return lambda x, _: _opblock.decode_versions(x, limits)
                if elem == _SNAPSHOT_ENTRY:
                    return lambda x, _: _opblock.decode_entries(x, limits)
            elif origin is list:
                elem = args[0]
            else:
                return _fixed_tuple_dec(args, [conv.get_structure_hook(a) for a in args])
            return _seq_dec(elem, conv.get_structure_hook(elem), origin is list)
        if origin is dict:
            return _dict_dec(args[1], conv.get_structure_hook(args[1]))
        raise RegistrationError(f"no decoder for the field type {t!r}")

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
                    raise e.at(f".{fname}") from None
            return cls(*args)

        return structure

    def _ops_hook(self, obj: Any, _: Any) -> Any:
        if type(obj) is not tuple or len(obj) != 2 or obj[0] != Ops.TAG:
            raise MalformedFrame("an Ops message is [4, ops]", limit="format", bound=2, value=obj)
        try:
            return Ops(_opblock.decode_ops(obj[1], self.limits))
        except DecodeError as e:
            raise e.at(".ops") from None

    def _sync_response_hook(self, obj: Any, _: Any) -> Any:
        if type(obj) is not tuple or len(obj) not in (2, 3) or obj[0] != SyncResponse.TAG:
            raise MalformedFrame("a SyncResponse message is [7, ops, more]", limit="format", bound=3, value=obj)
        more = obj[2] if len(obj) == 3 else False
        if type(more) is not bool:
            raise _wrong(more, "bool").at(".more")
        try:
            return SyncResponse(_opblock.decode_ops(obj[1], self.limits), more)
        except DecodeError as e:
            raise e.at(".ops") from None


def _seq_dec(elem: object, inner: StructureHook, as_list: bool) -> StructureHook:
    exact = elem if elem in (str, int, bool, bytes) else None

    def seq(x: Any, _: Any) -> Any:
        if type(x) is not tuple:
            raise _wrong(x, "an array")
        if exact is not None and all(type(e) is exact for e in x):
            return list(x) if as_list else x
        out = []
        for i, e in enumerate(x):
            try:
                out.append(inner(e, elem))
            except DecodeError as err:
                raise err.at(f"[{i}]") from None
        return out if as_list else tuple(out)

    return seq


def _fixed_tuple_dec(types_: tuple[Any, ...], inners: list[StructureHook]) -> StructureHook:
    size = len(inners)

    def fixed(x: Any, _: Any) -> Any:
        if type(x) is not tuple or len(x) != size:
            raise _wrong(x, f"an array of {size} items")
        out = []
        for i, (hook, t, e) in enumerate(zip(inners, types_, x, strict=True)):
            try:
                out.append(hook(e, t))
            except DecodeError as err:
                raise err.at(f"[{i}]") from None
        return tuple(out)

    return fixed


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
                raise err.at(f"[{k!r}]") from None
        return out

    return mapping


# ---------------------------------------------------------------- registry


_lock = threading.RLock()
_BY_TAG: dict[int, type] = {}
_BY_CLASS: dict[type, int] = {}
_ENCODER = make_converter(detailed_validation=False)
_ENCODER.register_unstructure_hook_factory(lambda t: not _is_registered(t), _unstructure_factory(_ENCODER))
for _t, _hook in _ENC_PRIMITIVES.items():
    _ENCODER.register_unstructure_hook(_t, _hook)
_ENCODER.register_unstructure_hook(Op, _enc_op)
_ENCODER.register_unstructure_hook(Version, _enc_version)
_UNSTRUCTURE: dict[type, UnstructureHook] = {}
"""type(msg) -> hook; the fast path of encode_message, filled at registration."""
_DECODERS: dict[int, tuple[DecodeLimits, _Decoder]] = {}
_DECODERS_BY_VALUE: dict[DecodeLimits, _Decoder] = {}
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
        known = _BY_TAG.get(tag)
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
            _check_supported(f.type, f"{cls.__qualname__}.{f.name}")
        _BY_TAG[tag] = cls
        _BY_CLASS[cls] = tag
        try:
            hook = _HAND_UNSTRUCTURE.get(cls) or _class_unstructure(cls, _ENCODER)
            _ENCODER.register_unstructure_hook(cls, hook)
            _UNSTRUCTURE[cls] = hook
            _DECODERS.clear()
            _DECODERS_BY_VALUE.clear()
            _decoder(DEFAULT_LIMITS)  # builds every hook now, so errors surface here
        except Exception as e:
            del _BY_TAG[tag], _BY_CLASS[cls]
            _UNSTRUCTURE.pop(cls, None)
            _DECODERS.clear()
            _DECODERS_BY_VALUE.clear()
            raise RegistrationError(f"cannot register {cls.__qualname__}: {e}") from e


def unregister_message(cls: type) -> None:
    """Remove ``cls`` from the tagged union (for tests); core messages stay. Unknown classes: no-op."""
    if cls in MESSAGE_TYPES:
        raise RegistrationError(f"{cls.__qualname__} is a core message; it cannot be unregistered")
    with _lock:
        tag = _BY_CLASS.pop(cls, None)
        if tag is None:
            return
        del _BY_TAG[tag]
        _UNSTRUCTURE.pop(cls, None)
        _DECODERS.clear()
        _DECODERS_BY_VALUE.clear()


def registered_messages() -> dict[int, type]:
    """The tagged union: tag -> message class."""
    return dict(_BY_TAG)


def _decoder(limits: DecodeLimits) -> _Decoder:
    """The decoder for ``limits``: by identity (fast), else by value (equal limits share one)."""
    entry = _DECODERS.get(id(limits))
    if entry is not None and entry[0] is limits:
        return entry[1]
    with _lock:
        dec = _DECODERS_BY_VALUE.get(limits)
        if dec is None:
            if len(_DECODERS_BY_VALUE) >= _DECODERS_MAX:
                _DECODERS_BY_VALUE.clear()
            dec = _Decoder(limits, list(_BY_TAG.values()))
            _DECODERS_BY_VALUE[limits] = dec
        if len(_DECODERS) >= _DECODERS_MAX:
            _DECODERS.clear()
        _DECODERS[id(limits)] = (limits, dec)  # holding limits keeps its id from being reused
        return dec


# ---------------------------------------------------------------- msgpack


def packb(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


_LIMIT_RE: Final = re.compile(r"(\d+) exceeds max_(str|bin|array|map|ext)_len\((\d+)\)")


def unpack(data: bytes, limits: DecodeLimits) -> Any:
    """Unpack one msgpack object within ``limits``; raise DecodeError.

    A pre-pass (``Unpacker.skip``, which allocates nothing) first checks that
    the bytes hold exactly one complete object, so that no container is
    allocated at a length its bytes cannot back: msgpack pre-sizes arrays
    from their declared length.
    """
    size = len(data)
    try:
        skipper = msgpack.Unpacker(max_buffer_size=max(size, 1))
        skipper.feed(data)
        skipper.skip()
        if skipper.tell() != size:
            raise MalformedFrame(
                f"{size - skipper.tell()} extra bytes follow the message", limit="format", value=size
            )
        return msgpack.unpackb(
            data,
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_str_len=limits.str_bytes_max,
            max_bin_len=limits.bin_bytes_max,
            max_array_len=limits.container_len_max,
            max_map_len=limits.container_len_max,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except msgpack.StackError:
        raise NestingTooDeep(
            "the data nests deeper than the unpacker's stack (1024 levels)",
            limit="depth_max",
            bound=limits.depth_max,
            value=">1024",
        ) from None
    except msgpack.OutOfData:
        raise MalformedFrame("the message is truncated", limit="format", value=size) from None
    except msgpack.ExtraData:  # pragma: no cover - the pre-pass catches it
        raise MalformedFrame("extra bytes follow the message", limit="format", value=size) from None
    except msgpack.FormatError:
        raise MalformedFrame("the bytes are not msgpack (a reserved type byte)", limit="format") from None
    except UnicodeDecodeError:
        raise MalformedFrame("a str is not valid UTF-8", limit="format") from None
    except ValueError as e:
        raise _limit_error(str(e), limits) from None
    except Exception as e:
        raise MalformedFrame(f"the bytes do not unpack: {type(e).__name__}: {e}", limit="unexpected") from None


def _limit_error(text: str, limits: DecodeLimits) -> DecodeError:
    m = _LIMIT_RE.search(text)
    if m is None:
        if "map key" in text:
            return WrongType(f"a map key is not a str ({text})", limit="type", bound="str")
        return MalformedFrame(f"the bytes do not unpack: {text}", limit="format")
    seen, kind, bound = int(m.group(1)), m.group(2), int(m.group(3))
    if kind == "str":
        return StringTooLong(
            f"a str of {seen} bytes exceeds str_bytes_max={bound}", limit="str_bytes_max", bound=bound, value=seen
        )
    if kind == "bin":
        return BytesTooLong(
            f"a bytes value of {seen} bytes exceeds bin_bytes_max={bound}", limit="bin_bytes_max", bound=bound, value=seen
        )
    if kind == "ext":
        return MalformedFrame("msgpack ext types are not used by this protocol", limit="format", value=seen)
    return ContainerTooLong(
        f"a{'n array' if kind == 'array' else ' map'} of {seen} items exceeds container_len_max={bound}",
        limit="container_len_max",
        bound=bound,
        value=seen,
    )


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


def pack_checked(obj: object, original: object) -> bytes:
    """packb, with a DataCloneError naming the culprit on failure."""
    try:
        return packb(obj)
    except UnicodeEncodeError:
        where = find_unencodable_str(original) or "$"
        raise DataCloneError(
            f"the str at {where} is not valid UTF-8 (a lone surrogate?); fix or drop it",
            type_name="str",
            where=where,
        ) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise DataCloneError(
            f"cannot encode {type(original).__qualname__}: {e}", type_name=type(original).__qualname__
        ) from None


def encode_message(msg: object) -> bytes:
    """One registered message as bytes (unframed): ``[TAG, field1, ...]``; raise DataCloneError."""
    return pack_checked(unstructure_message(msg), msg)


def structure_message(obj: object, limits: DecodeLimits) -> object:
    """Build the message an unpacked object describes; raise DecodeError."""
    try:
        return _decoder(limits).message(obj)
    except DecodeError:
        raise
    except RecursionError:
        raise NestingTooDeep("the message nests too deep", limit="depth_max", bound=limits.depth_max) from None
    except Exception as e:
        raise MalformedFrame(f"the message does not decode: {type(e).__name__}: {e}", limit="unexpected") from None


def decode_message(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> object:
    """Decode one unframed message; raise DecodeError (and nothing else)."""
    try:
        size = len(data)
        if size > limits.frame_bytes_max:
            raise FrameTooLarge(
                f"a message of {size} bytes exceeds frame_bytes_max={limits.frame_bytes_max}",
                limit="frame_bytes_max",
                bound=limits.frame_bytes_max,
                value=size,
            )
        return structure_message(unpack(data, limits), limits)
    except DecodeError:
        raise
    except Exception as e:
        raise MalformedFrame(f"the message does not decode: {type(e).__name__}: {e}", limit="unexpected") from None


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
    try:
        size = len(data)
        if size > limits.frame_bytes_max:
            raise FrameTooLarge(
                f"a payload of {size} bytes exceeds frame_bytes_max={limits.frame_bytes_max}",
                limit="frame_bytes_max",
                bound=limits.frame_bytes_max,
                value=size,
            )
        return fix_value(unpack(data, limits), limits)
    except DecodeError:
        raise
    except RecursionError:
        raise NestingTooDeep("the payload nests too deep", limit="depth_max", bound=limits.depth_max) from None
    except Exception as e:
        raise MalformedFrame(f"the payload does not decode: {type(e).__name__}: {e}", limit="unexpected") from None


for _cls in MESSAGE_TYPES:
    register_message(_cls)
