"""Versions and snapshot entries on the wire (the entry block's layout is in
:mod:`statesync.wire._opblock`, next to the op block's).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

from statesync.core import Version
from statesync.errors import DataCloneError, OutOfRange
from statesync.wire import _columns
from statesync.wire._limits import DecodeLimits
from statesync.wire._values import SCALAR_TYPES, check_payload, clone_error_at


def encode_versions(versions: Sequence[Version]) -> Sequence[Version]:
    """Versions go as they are (msgpack packs NamedTuples as arrays); this only checks them."""
    for i, v in enumerate(versions):
        if not (
            isinstance(v, tuple)
            and len(v) == 4
            and type(v[1]) is int
            and 0 <= v[1] <= _columns.U64_MAX
            and type(v[2]) is str
            and v[2]
            and type(v[3]) is int
            and 1 <= v[3] <= _columns.U64_MAX
        ):
            raise DataCloneError(
                f"versions[{i}] = {v!r} is not a Version(value, hlc, origin, seq)",
                type_name=type(v).__qualname__,
                where=f"$[{i}]",
            )
        if type(v[0]) not in SCALAR_TYPES:
            try:
                check_payload(v[0])
            except DataCloneError as e:
                clone_error_at(e, f"[{i}].value")
                raise
    return versions


def encode_entries(entries: Sequence[tuple[tuple[str, ...], Sequence[Version]]]) -> list[object]:
    """The entry block of snapshot ``entries`` (see the module docstring); raise DataCloneError."""
    n = len(entries)
    if n == 0:
        return [0, (), 0, (), (), None, None, None]
    try:
        paths, groups = zip(*entries, strict=True)
        if not _columns.TUPLE_ONLY.issuperset(map(type, paths)):
            raise TypeError
        segments = tuple(chain.from_iterable(paths))
        if not _columns.STR_ONLY.issuperset(map(type, segments)) or "" in segments:
            raise TypeError
        lens = list(map(len, groups))
        flat = tuple(chain.from_iterable(groups))
        if flat:
            values, hlcs, origins, seqs = zip(*flat, strict=True)
        else:
            values = hlcs = origins = seqs = ()
        index: dict[str, int] = dict.fromkeys(origins, 0)
        table = _columns.enc_table(index)
        hlc_col = _columns.enc_ints(hlcs, 0)
        seq_col = _columns.enc_ints(seqs, 1)
        _columns.check_values(values)
        return [n, table, _columns.enc_lens(lens), paths, values, hlc_col, _columns.enc_strs(origins, index), seq_col]
    except Exception as exc:
        raise _locate_bad_entry(entries) from exc


def _locate_bad_entry(entries: Sequence[object]) -> DataCloneError:
    """The DataCloneError naming the first snapshot entry that cannot be encoded."""
    return _columns.first_clone_error(entries, _check_entry, "snapshot entries")


def _check_entry(i: int, entry: object) -> None:
    """Raise DataCloneError (``where`` relative to the entry) unless ``entries[i]`` can be encoded."""
    if not (isinstance(entry, tuple) and len(entry) == 2 and type(entry[0]) is tuple):
        raise DataCloneError(f"entries[{i}] is not a (path, versions) pair", type_name=type(entry).__qualname__)
    if not all(type(s) is str and s for s in entry[0]):
        raise DataCloneError(
            f"entries[{i}] has the path {entry[0]!r}; segments are non-empty str", type_name="tuple", where="$[0]"
        )
    if not isinstance(entry[1], Sequence):
        raise DataCloneError(
            f"entries[{i}] has versions of type {type(entry[1]).__qualname__}, not a sequence",
            type_name=type(entry[1]).__qualname__,
            where="$[1]",
        )
    try:
        encode_versions(entry[1])
    except DataCloneError as e:
        clone_error_at(e, "[1]")
        raise


def decode_versions(rows: Any, limits: DecodeLimits, paths: Sequence[Any] | None = None) -> tuple[Version, ...]:
    """Decode and validate an array of version rows ``[value, hlc, origin, seq]``."""
    if type(rows) is not tuple:
        raise _columns.malformed("the versions are not an array")
    if not rows:
        return ()
    if not _columns.TUPLE_ONLY.issuperset(map(type, rows)) or set(map(len, rows)) != {4}:
        raise _columns.malformed("a version is not an array [value, hlc, origin, seq]")
    values, hlcs, origins, seqs = zip(*rows, strict=True)
    n = len(values)
    _columns.check_node_ids(origins, limits, "a version's origin")
    for name, col, low in (("hlc", hlcs, 0), ("seq", seqs, 1)):
        if not _columns.INT_ONLY.issuperset(map(type, col)):
            raise _columns.first_wrong(col, int, f"a version's {name} is a {{}}, not an int")
        lo = min(col)
        if lo < low:
            raise OutOfRange(f"a version's {name} is {lo}", limit=name, bound=(low, _columns.U64_MAX), value=lo)
    fixed = _columns.fix_values(values, n, limits, None, None)
    if fixed is values:
        return tuple(map(_columns.new_tuple, repeat(Version), rows))
    return tuple(map(_columns.new_tuple, repeat(Version), zip(fixed, hlcs, origins, seqs, strict=True)))


def decode_version(obj: Any, limits: DecodeLimits) -> Version:
    versions = decode_versions((obj,), limits)
    return versions[0]


def decode_entries(block: Any, limits: DecodeLimits) -> tuple[tuple[tuple[str, ...], tuple[Version, ...]], ...]:
    """Decode and validate an entry block (snapshot entries, see the module docstring)."""
    if type(block) is not tuple or len(block) != _columns.ENTRY_BLOCK_LEN:
        raise _columns.malformed(f"the snapshot entries are not an array of {_columns.ENTRY_BLOCK_LEN} columns")
    n, table, ccol, paths, values, hcol, ocol, scol = block
    _columns.dec_head(n, table, paths, limits, count="entry count", holds="a snapshot chunk holds", items="entries")
    if not n:
        return ()
    uniform, m, lens = _columns.dec_lens(ccol, n, "version count", limits, "a snapshot chunk holds {} versions")
    values = _columns.fix_values(values, m, limits, None, None)
    origins = _columns.dec_strs(ocol, table, m, "version origins")
    hlcs = _columns.dec_ranged(hcol, m, "hlc", 0, what="a version's hlc", plural="hlcs", limit="hlc")
    seqs = _columns.dec_ranged(scol, m, "seq", 1, what="a version's seq", plural="seqs", limit="seq")
    versions = map(_columns.new_tuple, repeat(Version), zip(values, hlcs, origins, seqs, strict=True))
    grouped = _columns.split_groups(versions, n, uniform, lens)
    return tuple(zip(paths, grouped, strict=True))
