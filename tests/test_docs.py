"""Every Python code block in these documents runs, so the docs cannot rot.

The blocks of one document run in order, in a directory of their own, with this
checkout's package on the path, as a reader following the page would run them:

- a block whose first line is ``# name.py`` is saved as that file (a module the next
  blocks import, a ``conftest.py``); if the name starts with ``test_`` it is also run
  with pytest;
- another block that defines ``test_`` functions is run with pytest;
- any other block is run with ``python``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/index.md", "docs/quickstart.md", "docs/concepts.md", "docs/decorators.md",
        "docs/fastapi.md", "docs/flask.md", "docs/testing.md", "docs/observability.md", "docs/configuration.md",
        "docs/api.md", "docs/migration.md", "docs/troubleshooting.md", "docs/local-cache.md",
        "docs/tiered-cache.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NAMED = re.compile(r"#\s*([\w.-]+\.py)\s*$")


def blocks(doc: str) -> list[tuple[int, str]]:
    text = (ROOT / doc).read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def _plugin_flags() -> list[str]:
    """Load our pytest plugin in the inner runs unless its entry point already does."""
    eps = importlib.metadata.entry_points(group="pytest11")
    if any(ep.value == "tieredcache.pytest_plugin" for ep in eps):
        return []
    return ["-p", "tieredcache.pytest_plugin"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_code_block_of_the_document_runs(doc, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CACHE_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT / "src"), *sys.path])
    found = blocks(doc)
    assert found, f"{doc} has no python code blocks"
    for line, code in found:
        first = code.split("\n", 1)[0]
        named = NAMED.fullmatch(first)
        name = named.group(1) if named else f"block_{line}.py"
        is_test = name.startswith("test_") or (not named and re.search(r"^def test_", code, re.M))
        if is_test and not named:
            name = f"test_block_{line}.py"
        (tmp_path / name).write_text(code)
        if named and not is_test:
            continue  # a module or conftest the following blocks use
        if is_test:
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_plugin_flags(), name]
        else:
            cmd = [sys.executable, name]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{doc}:{line} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_the_api_reference_documents_every_public_name():
    """docs/api.md names, in backquotes, every name of tieredcache.__all__, of the public
    modules' __all__ and the pytest plugin's fixtures."""
    import tieredcache
    import tieredcache.prometheus
    import tieredcache.pytest_plugin
    import tieredcache.testing

    names = set(tieredcache.__all__) | set(tieredcache.testing.__all__) | {"RedisServer"}
    names |= set(tieredcache.prometheus.__all__) | set(tieredcache.pytest_plugin.__all__)
    names |= {"tiered_cache", "cache_events", "cache_clock", "redis_server", "redis_url"}
    for module in ("tieredcache.contrib.fastapi", "tieredcache.contrib.flask"):
        names |= set(pytest.importorskip(module).__all__)
    text = (ROOT / "docs/api.md").read_text()
    missing = sorted(n for n in names if not re.search(r"`(?:[\w.]+\.)?" + re.escape(n) + r"[`(\s]", text))
    assert not missing, f"docs/api.md does not document: {', '.join(missing)}"
