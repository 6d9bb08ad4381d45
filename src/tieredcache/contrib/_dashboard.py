"""The dashboard page served at ``GET {prefix}/dashboard`` by the admin router/blueprint.

``dashboard.html`` ships as package data: one self-contained page (inline CSS and JS, no
external resource) that polls ``./stats`` relative to its own URL. It holds no cached
value and no secret, so the bytes are the same for every request; they are read once.

``headers()`` go with it: ``Content-Type``, ``Cache-Control: no-store``, and a
Content-Security-Policy that allows only the page's own inline ``<script>`` and
``<style>`` (by SHA-256 hash, not ``'unsafe-inline'``) and ``fetch`` to the same origin:
the page can load nothing from elsewhere, and cannot be framed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

__all__ = ["CONTENT_TYPE", "headers", "page"]

CONTENT_TYPE = "text/html; charset=utf-8"

_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


@functools.cache
def page() -> bytes:
    """The page's bytes (read from the package once)."""
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()


def _hashes(tag: bytes) -> str:
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
                    for name, body in _INLINE.findall(page()) if name == tag)


@functools.cache
def headers() -> dict[str, str]:
    """The response headers for ``page()`` (the content type included)."""
    csp = (f"default-src 'none'; script-src {_hashes(b'script')}; style-src {_hashes(b'style')}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return {
        "Content-Type": CONTENT_TYPE,
        "Cache-Control": "no-store",
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
