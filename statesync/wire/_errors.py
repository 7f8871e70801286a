"""Errors of the wire layer.

Decoding raises :class:`DecodeError` and nothing else, whatever the input
bytes: one subclass per violated limit or rule, each naming the limit (the
:class:`~statesync.wire.DecodeLimits` field or the rule), its bound, the value
seen and where in the message it sits. Encoding raises :class:`DataCloneError`
for what cannot be encoded (like the web's structured clone) and
:class:`EncodeError` for a frame a peer would refuse.
"""

from __future__ import annotations

from statesync.core import StatesyncError


class DecodeError(StatesyncError, ValueError):
    """Bytes from the network that do not decode: the frame must be dropped.

    ``limit`` names the violated limit (a ``DecodeLimits`` field such as
    ``"frame_bytes_max"``) or rule (such as ``"format"``); ``bound`` is the
    limit's value (or what was expected); ``value`` is what was seen; ``where``
    is the position in the message (``"$"`` is the message itself,
    ``"$.ops[3].path"`` a nested field), ``"$"`` where unknown.

    ``limit == "unexpected"`` marks input the decoder met no explicit check
    for (its safety net caught a Python error): the input is refused all the
    same, but the case deserves a precise check; please report it.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str = "format",
        bound: object = None,
        value: object = None,
        where: str = "$",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.bound = bound
        self.value = value
        self.where = where

    def at(self, prefix: str) -> DecodeError:
        """Prefix ``where`` with the position of the enclosing field; return self."""
        self.where = "$" + prefix + self.where[1:]
        return self

    def __str__(self) -> str:
        if self.where == "$":
            return self.message
        return f"{self.message} (at {self.where})"


class MalformedFrame(DecodeError):
    """The bytes are not a well-formed frame or message (truncated, garbage, extra data)."""


class UnknownVersion(DecodeError):
    """The frame's version byte is not one this build speaks."""


class UnknownFlags(DecodeError):
    """The frame's flags byte has bits this build does not know."""


class UnknownMessageType(DecodeError):
    """A message tag that no registered message class carries."""


class WrongType(DecodeError):
    """A field holds a value of the wrong type (``bound`` is the expected type name)."""


class OutOfRange(DecodeError):
    """A number lies outside the range its field allows (a seq below 1, a kind not 0 or 1)."""


class FrameTooLarge(DecodeError):
    """The frame (or payload) has more bytes than ``frame_bytes_max``."""


class DecompressedTooLarge(DecodeError):
    """A compressed frame claims, or expands to, more than ``decompressed_bytes_max``."""


class CompressionError(DecodeError):
    """The compressed body is corrupt or does not expand to the size its frame states."""


class NestingTooDeep(DecodeError):
    """Containers nest deeper than ``depth_max``."""


class StringTooLong(DecodeError):
    """A str is longer than ``str_bytes_max`` (UTF-8 bytes) or a node id than ``node_id_chars_max``."""


class BytesTooLong(DecodeError):
    """A bytes value is longer than ``bin_bytes_max``."""


class ContainerTooLong(DecodeError):
    """A list, tuple or dict has more items than ``container_len_max``."""


class BatchTooLong(DecodeError):
    """A frame holds more messages than ``batch_len_max``, or a message more ops than ``ops_len_max``."""


class PathTooDeep(DecodeError):
    """A path has more segments than ``path_depth_max``."""


class SegmentTooLong(DecodeError):
    """A path segment has more characters than ``segment_chars_max``."""


class BadPath(DecodeError):
    """A path is not a tuple of non-empty str segments."""


class ValueRejected(DecodeError):
    """A value breaks the core value rules (``statesync.core.validate_value``)."""


class DataCloneError(StatesyncError, TypeError):
    """Something given to the encoder cannot be encoded, like the web's structured clone.

    ``type_name`` names the offending type and ``where`` says where it sits
    (``"$"`` is the value itself, ``"$['a'][2]"`` a nested element,
    ``"$.ops[3].value"`` a field of a message). ``limit`` names the wire limit
    the value would break, or is ``None`` when its type is the problem.
    """

    def __init__(
        self, message: str, *, type_name: str, where: str = "$", limit: str | None = None
    ) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.where = where
        self.limit = limit


class EncodeError(StatesyncError, ValueError):
    """A frame cannot be built, or would break a limit its receiver enforces.

    ``limit`` names the ``DecodeLimits`` field, ``bound`` its value and
    ``value`` what the frame would have had.
    """

    def __init__(
        self, message: str, *, limit: str = "", bound: object = None, value: object = None
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.bound = bound
        self.value = value


class WireSettingError(StatesyncError, ValueError):
    """A wire setting is invalid (a DecodeLimits bound, a Compression or Batcher parameter)."""


class RegistrationError(StatesyncError, TypeError):
    """A message class cannot join the tagged union (bad or duplicate TAG, unsupported field)."""
