"""The README's asyncio example runs as written (against a real node, its endpoint swapped in)."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.nodes import NodeThread

README = (Path(__file__).parents[2] / "README.md").read_text()
EXAMPLE_ENDPOINT = "tcp://127.0.0.1:7111"


def example() -> str:
    found = re.search(r"<!-- aio-example -->\n```python\n(.*?)\n```\n<!-- /aio-example -->", README, re.S)
    assert found, "README.md has no aio-example block"
    return found.group(1)


@pytest.fixture
def node() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}, {"node_id": "b"}])
    yield nodes
    nodes.stop()


def test_the_readme_asyncio_example_runs(node: NodeThread) -> None:
    code = example()
    assert EXAMPLE_ENDPOINT in code and "## asyncio" in README
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(EXAMPLE_ENDPOINT, node.endpoints[0]), "README.md (asyncio)", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().splitlines() == ["put flags.new_ui True", "[True, None]"]
