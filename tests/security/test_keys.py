"""Key files and the authorized-keys file: formats, modes, errors that never quote a key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq.auth

from statesync.ports import CurveKeys
from statesync.security import (
    AuthorizedKeys,
    Grant,
    KeyFileError,
    key_paths,
    load_public_key,
    load_secret_key_file,
    write_keypair,
)

A = CurveKeys.generate()
B = CurveKeys.generate()
C = CurveKeys.generate()


def test_keygen_writes_a_pair_with_a_private_secret_and_never_overwrites(tmp_path: Path) -> None:
    os.umask(0o000)  # the secret file is 0600 whatever the umask
    try:
        keys, public, secret = write_keypair(tmp_path / "a")
    finally:
        os.umask(0o022)
    assert (public.name, secret.name) == ("a.key", "a.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert keys.secret not in public.read_text()
    assert load_secret_key_file(secret) == keys
    assert load_public_key(public) == keys.public == load_public_key(keys.public)
    # the standard ZeroMQ certificate format: zmq.auth reads it
    assert zmq.auth.load_certificate(str(secret)) == (keys.public.encode(), keys.secret.encode())
    with pytest.raises(KeyFileError, match="exists; keygen never replaces a key unless given --force"):
        write_keypair(tmp_path / "a")
    assert load_secret_key_file(secret) == keys
    again, _, _ = write_keypair(tmp_path / "a.key_secret", force=True)
    assert again != keys and load_secret_key_file(secret) == again
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "a.key_secret"]  # no temporary left


def test_secret_key_files_are_checked(tmp_path: Path) -> None:
    keys, public, secret = write_keypair(tmp_path / "n")
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match=r"can be read or written by any user .*chmod 600"):
        load_secret_key_file(secret)
    secret.chmod(0o600)
    with pytest.raises(KeyFileError, match="that is a public key file"):
        load_secret_key_file(public)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_secret_key_file(tmp_path / "missing.key_secret")
    bad = tmp_path / "bad.key_secret"
    bad.write_text(secret.read_text().replace(keys.public, B.public))
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"bad.key_secret:\d+: the public key does not belong") as info:
        load_secret_key_file(bad)
    assert keys.secret not in str(info.value)
    with pytest.raises(KeyFileError, match="neither a public key"):
        load_public_key("not-a-key")
    with pytest.raises(KeyFileError, match="key name"):
        key_paths("../bad name")


def test_authorized_keys_roles_prefixes_and_comments() -> None:
    text = f"""
# the cluster
peer  {A.public}          # node b
read  {B.public}
write {C.public} app.* config\\.d.*   # deploy bot
"""
    keys = AuthorizedKeys.parse(text, "auth")
    assert keys.counts() == {"peer": 1, "read": 1, "write": 1}
    assert keys.get(A.public) == Grant("peer", (), "node b", 3)
    writer = keys.get(C.public)
    assert writer is not None and writer.prefixes == (("app",), ("config.d",)) and writer.label == "deploy bot"
    assert writer.covers(("app",)) and writer.covers(("app", "x", "y")) and writer.covers(("config.d", "k"))
    assert not writer.covers(("secrets", "x")) and not writer.covers(("apps",)) and not writer.covers(())
    assert writer.scope() == "app.* config\\.d.*"
    reader = keys.get(B.public)
    assert reader is not None and not reader.may_write and reader.scope() == "nothing (read-only)"
    assert AuthorizedKeys.parse(f"write {C.public} *").get(C.public) == Grant("write", (), "", 1)
    assert keys.get(CurveKeys.generate().public) is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("admin {a}", r"auth:2: 'admin' is not a role; .*peer, read or write"),
        ("peer", "auth:2: the peer line has no key"),
        ("peer abc", "auth:2: the key is not a public key of 40 Z85 characters"),
        ("read {a} app.*", "auth:2: only write keys take path prefixes"),
        ("write {a} app", r"auth:2: prefix 'app' must be PATH.\* "),
        ("write {a} a..b.*", "auth:2: prefix 'a..b.*': path 'a..b' has an empty segment"),
        ("peer {a}\nread {a}", r"auth:3: this key is listed again \(first on line 2\)"),
        ("peer {a}\nread {a_secret}", "auth:3: this is the SECRET key of the key on line 2"),
        ("peer {own_secret}", "auth:2: this is the node's SECRET key"),
    ],
)
def test_bad_authorized_keys_lines_say_file_line_and_never_quote_a_key(line: str, error: str) -> None:
    own = CurveKeys.generate()
    text = "# header\n" + line.format(a=A.public, a_secret=A.secret, own_secret=own.secret)
    with pytest.raises(KeyFileError, match=error) as info:
        AuthorizedKeys.parse(text, "auth", secrets=[own.secret])
    message = str(info.value)
    assert "\n" not in message
    for key in (A.public, A.secret, own.secret):
        assert key not in message
