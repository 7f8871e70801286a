"""Key files: ``statesync keygen`` writes them, nodes and clients read them.

A key pair named ``NAME`` is two files in ZeroMQ's certificate format (the
ZPL text that pyzmq's ``zmq.auth`` and czmq's ``zcert`` read and write):

- ``NAME.key``: the public key; hand it out, list it in authorized-keys files.
- ``NAME.key_secret``: the public and the secret key, mode 0600; it never
  leaves the host that uses it.

Nothing here ever puts secret key text in a message, a log line or a repr:
errors name the file and the line, never the content.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Final

from statesync.errors import KeyFileError as KeyFileError  # noqa: PLC0414  (re-exported)
from statesync.ports import CurveKeys, is_key_text

log = logging.getLogger("statesync.security")

PUBLIC_SUFFIX: Final = ".key"
SECRET_SUFFIX: Final = ".key_secret"
KEY_FILE_BYTES_MAX: Final = 64 << 10
_LINE = re.compile(r'^\s*(public-key|secret-key)\s*=\s*"([^"]*)"\s*(#.*)?$')
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def key_paths(name: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.key, NAME.key_secret)`` for a key pair named ``name`` (a name or a path)."""
    text = os.fspath(name)
    for suffix in (SECRET_SUFFIX, PUBLIC_SUFFIX):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    base = Path(text)
    if not _NAME.match(base.name):
        raise KeyFileError(
            f"key name {base.name!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(the files are NAME.key and NAME.key_secret)"
        )
    return base.with_name(base.name + PUBLIC_SUFFIX), base.with_name(base.name + SECRET_SUFFIX)


def _certificate(name: str, keys: CurveKeys, secret: bool) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if secret:
        head = (
            "#   ZeroMQ CURVE **Secret** Certificate\n"
            "#   Keep this file secret (mode 0600); never copy it to another host.\n"
        )
        body = f'    public-key = "{keys.public}"\n    secret-key = "{keys.secret}"\n'
    else:
        head = (
            "#   ZeroMQ CURVE Public Certificate\n"
            "#   Hand this key out: list it in the authorized-keys file of every node\n"
            "#   this key may use, with its role (statesync README, Securing a cluster).\n"
        )
        body = f'    public-key = "{keys.public}"\n'
    return (
        f"#   ****  Generated on {now} by statesync keygen  ****\n{head}\n"
        f'metadata\n    name = "{name}"\ncurve\n{body}'
    )


def write_keypair(
    name: str | os.PathLike[str], *, force: bool = False, keys: CurveKeys | None = None
) -> tuple[CurveKeys, Path, Path]:
    """Generate a key pair and write ``NAME.key`` and ``NAME.key_secret`` (mode 0600).

    Refuses to replace either file unless ``force``. Returns the keys and both paths.
    """
    public_path, secret_path = key_paths(name)
    folder = secret_path.parent
    if not folder.is_dir():
        raise KeyFileError(f"{folder} is not a folder; create it first (mkdir -p {folder})")
    if not force:
        for path in (secret_path, public_path):
            if path.exists():
                raise KeyFileError(
                    f"{path} exists; keygen never replaces a key unless given --force "
                    "(every node and client using the old key would lose access)"
                )
    keys = keys or CurveKeys.generate()
    label = public_path.name[: -len(PUBLIC_SUFFIX)]
    # the secret first, so that a public file never exists without its secret
    _write_atomic(secret_path, _certificate(label, keys, True), 0o600, replace=force)
    _write_atomic(public_path, _certificate(label, keys, False), 0o644, replace=force)
    return keys, public_path, secret_path


def _write_atomic(path: Path, text: str, mode: int, *, replace: bool) -> None:
    """Write through a temporary file created with ``mode`` (never wider, whatever the umask)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite
            except FileExistsError:
                raise KeyFileError(f"{path} exists; keygen never replaces a key unless given --force") from None
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_small(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(KEY_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist; check the path (statesync keygen NAME makes a key pair)") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a folder, not a file") from None
    except PermissionError:
        raise KeyFileError(f"{what} {path} is not readable by this user; check its owner and mode") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if len(data) > KEY_FILE_BYTES_MAX:
        raise KeyFileError(f"{what} {path} is over {KEY_FILE_BYTES_MAX} bytes; it is not a key file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{what} {path} is not UTF-8 text; it is not a key file") from None


def _fields(text: str, path: Path, what: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if m is None:
            continue
        name, value = m.group(1), m.group(2)
        if name in out:
            raise KeyFileError(f"{path}:{number}: a second {name} line; a {what} holds one")
        out[name] = (value, number)
    return out


def check_secret_file_mode(path: Path) -> None:
    """Refuse a secret key file that other users can read or write; warn if its group can."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it reports the problem
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise KeyFileError(
            f"the secret key file {path} can be read or written by any user (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {path}, and make a new key pair if others may have read it"
        )
    if mode & (stat.S_IRGRP | stat.S_IWGRP):
        log.warning(
            "the secret key file %s is accessible to its group (mode %04o); chmod 600 it unless that is intended",
            path,
            stat.S_IMODE(mode),
        )


def load_secret_key_file(path: str | os.PathLike[str]) -> CurveKeys:
    """The key pair in a secret key file (``NAME.key_secret``)."""
    p = Path(path)
    what = "the secret key file"
    text = _read_small(p, what)
    fields = _fields(text, p, what)
    if "secret-key" not in fields:
        hint = " (that is a public key file: use NAME.key_secret)" if "public-key" in fields else ""
        raise KeyFileError(f"{p} holds no secret-key line{hint}; statesync keygen NAME writes NAME.key_secret")
    check_secret_file_mode(p)
    secret, number = fields["secret-key"]
    if not is_key_text(secret):
        raise KeyFileError(f"{p}:{number}: the secret key is not 40 Z85 characters; make a new key pair with statesync keygen")
    keys = CurveKeys.from_secret(secret)
    if "public-key" in fields:
        public, number = fields["public-key"]
        if public != keys.public:
            raise KeyFileError(f"{p}:{number}: the public key does not belong to the secret key in this file")
    return keys


def load_public_key(value: str | os.PathLike[str], what: str = "the server key") -> str:
    """A public key given as 40 Z85 characters, or as a key file holding a ``public-key`` line.

    A secret key file also holds its public key, so it is accepted too (only
    the public line is used). The error never repeats what was given.
    """
    text = os.fspath(value).strip()
    if is_key_text(text):
        return text
    p = Path(text)
    if not p.exists():
        raise KeyFileError(
            f"{what} is neither a public key (40 Z85 characters) nor an existing key file; "
            "give the key statesync keygen printed, or the path of NAME.key"
        )
    content = _read_small(p, what)
    fields = _fields(content, p, "key file")
    if "public-key" not in fields:
        bare = content.strip()
        if is_key_text(bare):
            return bare
        raise KeyFileError(f"{p} holds no public-key line; give the NAME.key file statesync keygen wrote")
    public, number = fields["public-key"]
    if not is_key_text(public):
        raise KeyFileError(f"{p}:{number}: the public key is not 40 Z85 characters")
    return public


def public_key_of(secret_text: str) -> str:
    """The public key belonging to a secret key (raises InvalidKey if it is not one)."""
    return CurveKeys.from_secret(secret_text).public


