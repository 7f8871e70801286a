"""The one error hierarchy: statesync.errors defines every public error, light to import."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import statesync
from statesync import errors
from statesync.errors import StatesyncError

ROOT = Path(statesync.__file__).parent

GROUPS = {
    errors.DataError, errors.ReplicationError, errors.ConfigError, errors.SecurityError, errors.WireError,
    errors.PortsError, errors.StorageError, errors.NodeClosedError, errors.ProtocolError, errors.ClientError,
    errors.CliError,
}  # fmt: skip
"""The documented groups: the direct subclasses of StatesyncError."""

PENDING = {
    "statesync.wire._batcher.BatcherError",
    "statesync.ports._options.InvalidOptions",
    "statesync.cli.cluster.ClusterError",
    "statesync.cli._demo.DemoError",
}
"""Error classes still defined in modules other helpers own this session; the lead moves them."""


def test_importing_the_errors_loads_no_transport() -> None:
    code = "import statesync.errors, sys; assert 'zmq' not in sys.modules and 'trio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_errors_module_imports_only_the_standard_library() -> None:
    tree = ast.parse((ROOT / "errors.py").read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__"}, imported


def _public_errors() -> list[type[BaseException]]:
    return [getattr(errors, name) for name in errors.__all__]


def test_every_name_is_an_error_under_one_documented_group() -> None:
    defined = {obj for obj in vars(errors).values() if inspect.isclass(obj) and issubclass(obj, StatesyncError)}
    assert set(_public_errors()) == defined
    assert {cls for cls in defined if StatesyncError in cls.__bases__} == GROUPS
    for cls in defined - {StatesyncError}:
        assert cls.__module__ == "statesync.errors" and cls.__doc__, cls
        assert sum(issubclass(cls, g) for g in GROUPS) == 1, cls


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(ROOT)], "statesync."):
        if not info.name.endswith("__main__") and info.name != "statesync.errors":
            names.append(info.name)
    return names


def test_no_module_outside_statesync_errors_defines_an_error() -> None:
    outside = set()
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            is_error = inspect.isclass(obj) and issubclass(obj, BaseException)
            if is_error and obj.__module__ == name and not obj.__name__.startswith("_"):
                outside.add(f"{name}.{obj.__name__}")
    assert outside <= PENDING, sorted(outside - PENDING)


@pytest.mark.parametrize(
    ("module", "name", "same"),
    [
        ("statesync.core", "StatesyncError", errors.StatesyncError),
        ("statesync.core", "WriteConcernError", errors.WriteConcernError),
        ("statesync.wire", "DecodeError", errors.DecodeError),
        ("statesync.ports", "PortClosedError", errors.PortClosedError),
        ("statesync.storage", "StorageError", errors.StorageError),
        ("statesync.storage._codec", "DecodeError", errors.StoredRecordError),
        ("statesync.security", "KeyFileError", errors.KeyFileError),
        ("statesync.node", "ConfigError", errors.ConfigError),
        ("statesync.node", "NodeClosedError", errors.NodeClosedError),
        ("statesync.node._security", "AccessDenied", errors.AccessDenied),
        ("statesync.client", "AccessDenied", errors.AccessDenied),
        ("statesync.client", "NodeUnavailable", errors.NodeUnavailable),
        ("statesync.cli._errors", "UsageError", errors.UsageError),
    ],
)
def test_the_layers_re_export_the_same_classes(module: str, name: str, same: type) -> None:
    assert getattr(importlib.import_module(module), name) is same


def test_a_stored_record_that_does_not_decode_is_a_statesync_error() -> None:
    decode_error = importlib.import_module("statesync.storage._codec").DecodeError
    assert issubclass(decode_error, errors.StorageError) and issubclass(decode_error, ValueError)


OWNED = [
    "errors.py", "protocol", "client", "aio", "node", "storage", "cli",
]  # fmt: skip


@pytest.mark.parametrize("where", OWNED)
def test_no_bare_builtin_errors_and_re_raises_keep_their_cause(where: str) -> None:
    path = ROOT / where
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                assert node.exc.func.id not in ("ValueError", "RuntimeError", "TypeError", "Exception"), (file, node.lineno)
            if isinstance(node, ast.Raise) and isinstance(node.cause, ast.Constant) and node.cause.value is None:
                pytest.fail(f"{file}:{node.lineno} drops the cause (raise ... from None)")
