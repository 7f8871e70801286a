"""Paths: tuples of non-empty string segments, written ``a.b.c`` in text.

A dot inside a segment is written ``\\.`` and a backslash ``\\\\``; no other
escape exists. The empty path ``()`` (text ``""``) is the root. Every function
here accepts the text form or the tuple form.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeAlias

from statesync.errors import InvalidPath

Path: TypeAlias = tuple[str, ...]
PathLike: TypeAlias = str | Sequence[str]

PATH_DEPTH_MAX = 32
SEGMENT_CHARS_MAX = 256

ROOT: Path = ()


def parse_path(
    text: str,
    *,
    depth_max: int = PATH_DEPTH_MAX,
    segment_chars_max: int = SEGMENT_CHARS_MAX,
) -> Path:
    """Parse the text form ``a.b\\.c`` into ``("a", "b.c")``; raise InvalidPath."""
    if not text:
        return ROOT
    if "\\" not in text:
        segments = tuple(text.split("."))
        if "" in segments:
            raise InvalidPath(f"path {text!r} has an empty segment; segments are separated by single dots")
        if len(segments) <= depth_max and len(text) <= segment_chars_max:
            return segments
    else:
        segments = _parse_escaped(text)
    _check_limits(segments, text, depth_max, segment_chars_max)
    return segments


def _parse_escaped(text: str) -> Path:
    segments: list[str] = []
    current: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidPath(f"path {text!r} ends with a lone backslash; write \\\\ for a backslash")
            nxt = text[i + 1]
            if nxt not in ".\\":
                raise InvalidPath(
                    f"path {text!r} has the unknown escape \\{nxt}; only \\. and \\\\ exist"
                )
            current.append(nxt)
            i += 2
            continue
        if ch == ".":
            if not current:
                raise InvalidPath(f"path {text!r} has an empty segment; segments are separated by single dots")
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if not current:
        raise InvalidPath(f"path {text!r} has an empty segment; segments are separated by single dots")
    segments.append("".join(current))
    return tuple(segments)


def _check_limits(segments: Path, shown: object, depth_max: int, segment_chars_max: int) -> None:
    if len(segments) > depth_max:
        raise InvalidPath(f"path {shown!r} is {len(segments)} segments deep; the limit is {depth_max}")
    if max(map(len, segments)) > segment_chars_max:
        raise InvalidPath(
            f"path {shown!r} has a segment longer than {segment_chars_max} characters"
        )


def as_path(
    path: PathLike,
    *,
    depth_max: int = PATH_DEPTH_MAX,
    segment_chars_max: int = SEGMENT_CHARS_MAX,
) -> Path:
    """Accept the text or the tuple form and return a validated tuple path."""
    if type(path) is str:
        return parse_path(path, depth_max=depth_max, segment_chars_max=segment_chars_max)
    if type(path) is tuple and len(path) <= depth_max:
        for segment in path:
            if type(segment) is not str or not segment or len(segment) > segment_chars_max:
                break
        else:
            return path
    if isinstance(path, str):
        return parse_path(path, depth_max=depth_max, segment_chars_max=segment_chars_max)
    if isinstance(path, tuple) and all(type(s) is str and s for s in path):
        segments: Path = path
    else:
        if not isinstance(path, list | tuple):
            raise InvalidPath(
                f"a path is a str like 'a.b' or a sequence of str segments, not {type(path).__name__}"
            )
        for segment in path:
            if not isinstance(segment, str):
                raise InvalidPath(
                    f"path segment {segment!r} is a {type(segment).__name__}; segments are str"
                )
            if not segment:
                raise InvalidPath(f"path {tuple(path)!r} has an empty segment")
        segments = tuple(path)
    if segments:
        _check_limits(segments, segments, depth_max, segment_chars_max)
    return segments


def format_path(path: Sequence[str]) -> str:
    """The text form of a tuple path: dots between segments, ``\\.`` inside them."""
    return ".".join(
        s.replace("\\", "\\\\").replace(".", "\\.") if ("." in s or "\\" in s) else s for s in path
    )


def is_ancestor(ancestor: Path, path: Path) -> bool:
    """True when ``ancestor`` is a strict ancestor of ``path`` (the root is everyone's)."""
    n = len(ancestor)
    return n < len(path) and path[:n] == ancestor


def is_descendant(path: Path, ancestor: Path) -> bool:
    """True when ``path`` lies strictly beneath ``ancestor``."""
    return is_ancestor(ancestor, path)


def is_related(a: Path, b: Path) -> bool:
    """True when one path equals, contains or lies beneath the other."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def ancestors(path: Path) -> Iterator[Path]:
    """The strict ancestors of ``path``, root first."""
    for i in range(len(path)):
        yield path[:i]
