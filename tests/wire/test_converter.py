from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar, Optional

import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import (
    MESSAGE_TYPES,
    Ack,
    Bye,
    Hello,
    Op,
    Ops,
    StatesyncError,
    SyncResponse,
    Value,
    Version,
    values_equal,
)
from statesync.wire import (
    DEFAULT_LIMITS,
    ContainerTooLong,
    DataCloneError,
    DecodeError,
    DecodeLimits,
    MalformedFrame,
    NestingTooDeep,
    OutOfRange,
    RegistrationError,
    StringTooLong,
    UnknownMessageType,
    WrongType,
    _converter,
    decode_message,
    decode_payload,
    encode_message,
    encode_payload,
    register_message,
    registered_messages,
    unregister_message,
)
from tests.wire import strategies as sst

HLC = int(1.8e12) << 16


def small_put(seq: int = 1234) -> Op:
    return Op("node-a", seq, HLC + seq, ("user", f"k{seq}"), 0, "v", (("node-a", seq - 1),))


# ---------------------------------------------------------------- messages


@settings(max_examples=300, deadline=None)
@given(sst.messages)
def test_every_core_message_round_trips(msg: object) -> None:
    data = encode_message(msg)
    back = decode_message(data)
    assert back == msg
    assert type(back) is type(msg)
    assert encode_message(back) == data  # types survive too (1 vs True vs 1.0)


@settings(max_examples=len(MESSAGE_TYPES) * 40, deadline=None)
@given(st.sampled_from(MESSAGE_TYPES).flatmap(sst.message_of))
def test_each_core_message_type_round_trips(msg: object) -> None:
    """Drawn per type, so that every type gets its share of examples."""
    assert decode_message(encode_message(msg)) == msg


def test_core_messages_are_preregistered_with_their_tags() -> None:
    table = registered_messages()
    for cls in MESSAGE_TYPES:
        assert table[cls.TAG] is cls


def test_messages_are_compact_arrays_led_by_the_tag() -> None:
    hello = Hello("n1", 1, {"a": 2}, 99, ("x",))
    raw = msgpack.unpackb(encode_message(hello))
    expected = [getattr(hello, f.name) for f in attrs.fields(Hello)]
    assert raw == [Hello.TAG, *[list(v) if type(v) is tuple else v for v in expected]]
    assert msgpack.unpackb(encode_message(Bye())) == [Bye.TAG, ""]


def test_small_put_is_at_most_40_bytes_in_a_message() -> None:
    single = len(encode_message(Ops((small_put(),))))
    hundred = len(encode_message(Ops(tuple(small_put(1234 + i) for i in range(100)))))
    assert single <= 50
    assert hundred / 100 <= 40


def test_decoded_ops_are_op_namedtuples_with_list_values() -> None:
    op = Op("a", 1, 2, ("p",), 0, {"x": [1, [2, {"y": []}]]}, (("a", 0), ("b", 3)))
    (back,) = decode_message(encode_message(Ops((op,)))).ops  # type: ignore[attr-defined]
    assert type(back) is Op
    assert back == op
    assert type(back.value["x"]) is list and type(back.value["x"][1]) is list
    assert type(back.context) is tuple and type(back.context[0]) is tuple


def test_trailing_defaulted_fields_may_be_missing_extra_fields_may_not() -> None:
    assert decode_message(msgpack.packb([Bye.TAG])) == Bye()
    assert decode_message(msgpack.packb([SyncResponse.TAG, [0, [], None, None, None, [], 0, [], 0, None, None]])) == SyncResponse(())
    with pytest.raises(MalformedFrame):
        decode_message(msgpack.packb([Bye.TAG, "x", "extra"]))
    with pytest.raises(MalformedFrame):
        decode_message(msgpack.packb([Ack.TAG]))


@pytest.mark.parametrize(
    ("raw", "error", "where"),
    [
        ([99, 1], UnknownMessageType, "$"),
        ([True, {}], UnknownMessageType, "$"),
        (["4", []], UnknownMessageType, "$"),
        ([], MalformedFrame, "$"),
        ({"a": 1}, MalformedFrame, "$"),
        ([Ack.TAG, {"a": "1"}], WrongType, "$.vv['a']"),
        ([Ack.TAG, {"a": True}], WrongType, "$.vv['a']"),
        ([Ack.TAG, [["a", 1]]], WrongType, "$.vv"),
        ([Hello.TAG, "n", 1, {}, 1.5], WrongType, "$.wall_ms"),
        ([Hello.TAG, "n", 1, {}, 1, ["x", 2]], WrongType, "$.capabilities[1]"),
        ([Hello.TAG, b"n", 1, {}, 1], WrongType, "$.node_id"),
        ([SyncResponse.TAG, [0, [], None, None, None, [], 0, [], 0, None, None], 1], WrongType, "$.more"),
    ],
)
def test_field_types_are_checked(raw: object, error: type[DecodeError], where: str) -> None:
    with pytest.raises(error) as info:
        decode_message(msgpack.packb(raw))
    assert info.value.where == where
    assert isinstance(info.value, DecodeError)


def test_decode_error_names_limit_bound_and_value() -> None:
    limits = DecodeLimits(str_bytes_max=10)
    with pytest.raises(StringTooLong) as info:
        decode_message(encode_message(Bye("x" * 11)), limits)
    e = info.value
    assert (e.limit, e.bound, e.value) == ("str_bytes_max", 10, 11)
    assert "str_bytes_max" in str(e)
    assert isinstance(e, StatesyncError)


def test_limits_are_per_call() -> None:
    msg = Hello("n", 1, {f"k{i}": i for i in range(50)}, 5)
    data = encode_message(msg)
    assert decode_message(data) == msg
    with pytest.raises(ContainerTooLong) as info:
        decode_message(data, DecodeLimits(container_len_max=10))
    assert info.value.value == 50
    assert decode_message(data) == msg  # the default decoder is untouched


# ---------------------------------------------------------------- encode errors


def test_encode_names_the_bad_field() -> None:
    with pytest.raises(DataCloneError) as info:
        encode_message(Hello("n", 1, {"a": "x"}, 5))  # type: ignore[dict-item]
    assert info.value.where == "$.vv['a']"
    with pytest.raises(DataCloneError) as info:
        encode_message(Hello("n", True, {}, 5))
    assert info.value.where == "$.protocol_version" and info.value.type_name == "bool"
    with pytest.raises(DataCloneError) as info:
        encode_message(Ops((small_put(), small_put()._replace(value={"a": [1, {2}]}))))
    assert info.value.where == "$.ops[1].value['a'][1]"
    assert info.value.type_name == "set"
    with pytest.raises(DataCloneError) as info:
        encode_message(Ops((small_put()._replace(seq=0),)))
    assert info.value.where == "$.ops[0].seq"
    with pytest.raises(DataCloneError) as info:
        encode_message(Ops((small_put()._replace(context=(("a", -1),)),)))
    assert info.value.where == "$.ops[0].context"
    with pytest.raises(DataCloneError) as info:
        encode_message(Ops((small_put()._replace(kind=2),)))
    assert info.value.where == "$.ops[0].kind"


def test_encode_unregistered_message_is_a_clone_error() -> None:
    @attrs.frozen
    class Stray:
        TAG: ClassVar[int] = 120

    with pytest.raises(DataCloneError, match="not a registered message"):
        encode_message(Stray())
    with pytest.raises(DataCloneError):
        encode_message({"tag": 1})


# ---------------------------------------------------------------- registration


@attrs.frozen
class _Inner:
    TAG: ClassVar[int] = 0  # a free tag, set by the _test_messages fixture
    name: str
    n: int = 0


@attrs.frozen
class _Envelope:
    TAG: ClassVar[int] = 0  # a free tag, set by the _test_messages fixture
    port: int
    data: Value
    blob: bytes
    ratio: float
    inner: _Inner
    maybe: Optional[_Inner] = None  # noqa: UP045 - Optional must work too
    either: int | str | None = None
    many: tuple[_Inner, ...] = ()
    pairs: tuple[tuple[str, int], ...] = ()
    fixed: tuple[str, int, bool] = ("a", 1, True)
    listed: list[int] = attrs.field(factory=list)
    named: dict[str, _Inner] = attrs.field(factory=dict)
    op: Op | None = None
    version: Version | None = None
    union: _Inner | int = 0


@pytest.fixture(autouse=True, scope="module")
def _test_messages() -> Iterator[None]:
    """Register the test classes under tags free right now, only while this module runs."""
    free = [t for t in range(127, 0, -1) if t not in registered_messages()]
    _Inner.TAG, _Envelope.TAG = free[0], free[1]
    register_message(_Inner)
    register_message(_Envelope)
    yield
    unregister_message(_Envelope)
    unregister_message(_Inner)


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        _Envelope,
        st.integers(0, 2**32),
        sst.values(),
        st.binary(max_size=10),
        st.floats(allow_nan=False),
        st.builds(_Inner, sst.texts, sst.ints64),
        st.none() | st.builds(_Inner, sst.texts),
        st.none() | sst.ints64 | sst.texts,
        st.lists(st.builds(_Inner, sst.texts), max_size=3).map(tuple),
        st.lists(st.tuples(sst.texts, sst.ints64), max_size=3).map(tuple),
        st.tuples(sst.texts, sst.ints64, st.booleans()),
        st.lists(sst.ints64, max_size=3),
        st.dictionaries(sst.texts, st.builds(_Inner, sst.texts), max_size=3),
        st.none() | sst.ops(),
        st.none() | sst.versions,
        st.builds(_Inner, sst.texts) | sst.ints64,
    )
)
def test_registered_envelope_round_trips(msg: _Envelope) -> None:
    back = decode_message(encode_message(msg))
    assert back == msg
    assert values_equal(back.data, msg.data)  # type: ignore[attr-defined]
    assert type(back.listed) is list  # type: ignore[attr-defined]


def test_float_fields_accept_ints_and_come_back_as_floats() -> None:
    msg = _Envelope(1, None, b"", 3, _Inner("x"))  # type: ignore[arg-type]
    back = decode_message(encode_message(msg))
    assert back.ratio == 3.0 and type(back.ratio) is float  # type: ignore[attr-defined]


def test_envelope_value_field_is_clone_checked() -> None:
    with pytest.raises(DataCloneError) as info:
        encode_message(_Envelope(1, {"a": [object()]}, b"", 1.0, _Inner("x")))  # type: ignore[dict-item]
    assert info.value.where == "$.data['a'][0]"


def test_registering_twice_is_a_no_op_and_tags_are_unique() -> None:
    register_message(_Inner)

    @attrs.frozen
    class Clash:
        TAG: ClassVar[int] = _Inner.TAG

    with pytest.raises(RegistrationError, match="taken"):
        register_message(Clash)


@pytest.mark.parametrize("tag", [0, 128, -1, "5", None, True])
def test_bad_tags_are_refused(tag: object) -> None:
    cls = attrs.frozen(type("Bad", (), {"__annotations__": {}, "TAG": tag}))
    with pytest.raises(RegistrationError):
        register_message(cls)


@attrs.frozen
class _Unregistered:
    x: int


@attrs.frozen
class _NestsUnregistered:
    TAG: ClassVar[int] = 0  # set to a free tag by the test
    u: _Unregistered


def test_unsupported_classes_and_fields_are_refused() -> None:
    free = [t for t in range(127, 0, -1) if t not in registered_messages()]

    @attrs.define
    class Mutable:
        TAG: ClassVar[int] = free[0]

    with pytest.raises(RegistrationError, match="frozen"):
        register_message(Mutable)

    with pytest.raises(RegistrationError, match="attrs"):
        register_message(int)

    @attrs.frozen
    class SetField:
        TAG: ClassVar[int] = free[1]
        s: set[int]

    with pytest.raises(RegistrationError, match="not supported"):
        register_message(SetField)

    _NestsUnregistered.TAG = free[3]
    with pytest.raises(RegistrationError, match="register_message"):
        register_message(_NestsUnregistered)

    @attrs.frozen
    class IntKeys:
        TAG: ClassVar[int] = free[2]
        d: dict[int, int]

    with pytest.raises(RegistrationError, match="keys"):
        register_message(IntKeys)
    assert not set(free[:4]) & set(registered_messages())


def test_registration_is_thread_safe() -> None:
    free = [t for t in range(127, 0, -1) if t not in registered_messages()][:6]
    classes = [
        attrs.frozen(type(f"T{tag}", (), {"__annotations__": {"x": "int"}, "TAG": tag})) for tag in free
    ]
    threads = [threading.Thread(target=register_message, args=(c,)) for c in classes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        for i, cls in enumerate(classes):
            assert registered_messages()[cls.TAG] is cls
            assert decode_message(encode_message(cls(i))) == cls(i)
    finally:
        for cls in classes:
            unregister_message(cls)
    assert not set(free) & set(registered_messages())


def test_unregister() -> None:
    with pytest.raises(RegistrationError, match="core"):
        unregister_message(Hello)
    unregister_message(_Unregistered)  # never registered: no-op
    assert registered_messages()[Hello.TAG] is Hello


# ---------------------------------------------------------------- payloads


@settings(max_examples=300, deadline=None)
@given(sst.values())
def test_payloads_round_trip(value: object) -> None:
    back = decode_payload(encode_payload(value))
    assert values_equal(back, value)  # type: ignore[arg-type]


def test_tuples_are_sent_as_lists() -> None:
    assert decode_payload(encode_payload((1, (2, 3), {"a": (4,)}))) == [1, [2, 3], {"a": [4]}]


def test_payload_scalars_and_edges() -> None:
    for value in (None, True, False, 0, -(2**63), 2**64 - 1, 1.5, "", "é", b"", b"\x00", [], {}):
        back = decode_payload(encode_payload(value))
        assert values_equal(back, value) and type(back) is type(value)
    assert math.isnan(decode_payload(encode_payload(math.nan)))  # type: ignore[arg-type]
    assert decode_payload(encode_payload(-math.inf)) == -math.inf


def test_payload_is_a_copy() -> None:
    src = {"a": [1, 2]}
    data = encode_payload(src)
    src["a"].append(3)
    assert decode_payload(data) == {"a": [1, 2]}


def _function() -> None:
    return None


class _Obj:
    pass


class _MyInt(int):
    pass


@pytest.mark.parametrize(
    ("value", "type_name", "where"),
    [
        (_function, "function", "$"),
        (lambda: 1, "function", "$"),
        (_Obj(), "_Obj", "$"),
        ({1, 2}, "set", "$"),
        ({"a": [1, 2, {3}]}, "set", "$['a'][2]"),
        ({"a": {"b": _Obj()}}, "_Obj", "$['a']['b']"),
        ([1, frozenset()], "frozenset", "$[1]"),
        ({"k": bytearray(b"x")}, "bytearray", "$['k']"),
        ({1: "int key"}, "int", "$"),
        ({"a": {None: 1}}, "NoneType", "$['a']"),
        (_MyInt(3), "_MyInt", "$"),
        ([2**64], "int", "$[0]"),
        ([-(2**63) - 1], "int", "$[0]"),
        ({"s": "\ud800"}, "str", "$['s']"),
        (["ok", {"\udfff": 1}], "str", "$[1]['\\udfff']"),
        (print, "builtin_function_or_method", "$"),
        (1j, "complex", "$"),
    ],
)
def test_payload_clone_errors_name_type_and_where(value: object, type_name: str, where: str) -> None:
    with pytest.raises(DataCloneError) as info:
        encode_payload(value)
    assert info.value.type_name == type_name
    assert info.value.where == where
    assert isinstance(info.value, TypeError) and isinstance(info.value, StatesyncError)


def test_payload_clone_error_for_a_socket() -> None:
    with socket.socket() as sock, pytest.raises(DataCloneError) as info:
        encode_payload({"conn": [sock]})
    assert info.value.type_name == "socket" and info.value.where == "$['conn'][0]"


def test_payload_cycles_and_depth_are_refused_at_the_call() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(DataCloneError) as info:
        encode_payload(cyclic)
    assert info.value.limit == "depth_max"
    deep: list[object] = []
    for _ in range(DEFAULT_LIMITS.depth_max - 1):
        deep = [deep]
    assert decode_payload(encode_payload(deep)) == deep
    with pytest.raises(DataCloneError):
        encode_payload([deep])


def test_payload_size_limits_are_checked_at_the_call() -> None:
    with pytest.raises(DataCloneError) as info:
        encode_payload(["x" * (DEFAULT_LIMITS.str_bytes_max + 1)])
    assert info.value.limit == "str_bytes_max" and info.value.where == "$[0]"
    with pytest.raises(DataCloneError) as info:
        encode_payload(["é" * (DEFAULT_LIMITS.str_bytes_max // 2 + 1)])  # 2 UTF-8 bytes each
    assert info.value.limit == "str_bytes_max"
    with pytest.raises(DataCloneError) as info:
        encode_payload([0] * (DEFAULT_LIMITS.container_len_max + 1))
    assert info.value.limit == "container_len_max"


def test_decode_payload_limits() -> None:
    data = encode_payload({"a": [[[1]]]})
    with pytest.raises(NestingTooDeep):
        decode_payload(data, DecodeLimits(depth_max=3))
    assert decode_payload(data, DecodeLimits(depth_max=4)) == {"a": [[[1]]]}
    with pytest.raises(WrongType):
        decode_payload(msgpack.packb({b"bytes key": 1}, use_bin_type=True))
    with pytest.raises(WrongType):
        decode_payload(msgpack.packb({"a": {1: 1}}), DEFAULT_LIMITS)
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb(msgpack.ExtType(3, b"x")))
    with pytest.raises(MalformedFrame):
        decode_payload(b"\xd6\xff\x00\x00\x00\x01")  # a msgpack timestamp
    with pytest.raises(MalformedFrame):
        decode_payload(encode_payload(1) + b"\x00")


def test_decoded_op_ranges_are_checked() -> None:
    good = encode_message(Ops((small_put(),)))
    raw = list(msgpack.unpackb(good))
    block = list(raw[1])
    block[3] = 0  # seq 0
    with pytest.raises(OutOfRange) as info:
        decode_message(msgpack.packb([raw[0], block]))
    assert info.value.limit == "seq" and info.value.where == "$.ops"


def test_equal_limits_share_one_decoder() -> None:
    """Callers may build DecodeLimits per call; the converter behind them is built once."""
    data = encode_message(Bye("x"))
    decode_message(data, DecodeLimits(frame_bytes_max=12345))
    built = len(_converter._DECODERS_BY_VALUE)
    for _ in range(200):
        assert decode_message(data, DecodeLimits(frame_bytes_max=12345)) == Bye("x")
    assert len(_converter._DECODERS_BY_VALUE) == built
    assert len(_converter._DECODERS) <= _converter._DECODERS_MAX
