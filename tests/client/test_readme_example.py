"""The README's pipelined-writes example (``submit``, ``set_many``) runs as written against a real node."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.client.nodes import NodeThread

README = (Path(__file__).parents[2] / "README.md").read_text()
EXAMPLE_ENDPOINT = "tcp://127.0.0.1:7111"


def test_the_readme_submit_example_runs() -> None:
    found = re.search(r"<!-- submit-example -->\n```python\n(.*?)\n```\n<!-- /submit-example -->", README, re.S)
    assert found, "README.md has no submit-example block"
    code = found.group(1)
    assert EXAMPLE_ENDPOINT in code
    nodes = NodeThread([{"node_id": "a"}])
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace(EXAMPLE_ENDPOINT, nodes.endpoints[0]), "README.md (submit)", "exec"), {"__name__": "__readme__"})
        assert out.getvalue().splitlines() == ["1000 1000 done"]
    finally:
        nodes.stop()
