"""Every Python code block in these documents runs, so the docs cannot rot.

Each block runs in a fresh process (as a reader pasting it would), with this checkout's
package on the path and the default cache unset. A block that needs Redis gets
``REDIS_URL`` from the test's private server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["docs/decorators.md", "docs/fastapi.md", "docs/flask.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for i, m in enumerate(BLOCK.finditer(text)):
            line = text.count("\n", 0, m.start()) + 2
            yield pytest.param(doc, line, m.group(1), id=f"{doc}:{line}")


@pytest.mark.parametrize("doc,line,code", list(blocks()))
def test_code_block_runs(doc, line, code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CACHE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *sys.path])
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"{doc}:{line} failed:\n{r.stderr}"


def test_the_documents_have_code_blocks():
    assert len(list(blocks())) >= 8
