"""The dashboard page (docs/observability.md): ``GET {prefix}/dashboard`` on the FastAPI
admin router and the Flask admin blueprint.

Fast tests (TestClient, Flask test client): the page needs the same authentication as the
other admin routes, is the packaged ``dashboard.html`` whatever the cache holds, and loads
nothing from anywhere else (its Content-Security-Policy allows only its own inline script
and style, and ``fetch`` to the same origin).

The browser test loads the page in real headless Chromium, driven through chromedriver's
W3C WebDriver HTTP protocol with ``urllib`` (no Selenium dependency), from a live uvicorn
app on loopback that gets steady traffic; it walks the token form (401, a wrong token, the
right one), waits for three polls, checks that every chart drew data, and saves
``build/dashboard.png``. Debian's ``chromium`` and ``chromium-driver`` are installed with
apt-get when missing (root only); when that is impossible the test is skipped, saying why.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from flask import Flask

from tieredcache import TieredCache
from tieredcache.contrib import _admin, _dashboard
from tieredcache.contrib.fastapi import cache_admin_router, tieredcache_lifespan
from tieredcache.contrib.flask import cache_admin_blueprint

with warnings.catch_warnings():
    # starlette asks for the httpx2 package and warns when it finds httpx instead
    warnings.filterwarnings("ignore", message=".*httpx2", category=Warning)
    from fastapi.testclient import TestClient

TOKEN = "dashboard-admin-token-of-some-length"
SECRET_VALUE = "planted-cached-value-0x5eC12e7"
ROOT = Path(__file__).resolve().parent.parent
# HTTP Basic with the token as the password, so that a browser's own login prompt opens the
# page (spec item 3): on once the admin core defines the challenge the dashboard sends.
BASIC_CHALLENGE: str | None = getattr(_admin, "BASIC_CHALLENGE", None)
needs_basic = pytest.mark.skipif(BASIC_CHALLENGE is None, reason="the admin routes do not accept HTTP Basic yet "
                                 "(tieredcache.contrib._admin.BASIC_CHALLENGE is missing)")


# =========================================================================================
# Fast tests: both frameworks
# =========================================================================================

Get = Callable[..., tuple[int, dict[str, str], bytes]]


def fastapi_get(cache: TieredCache, **router_options: Any) -> Get:
    app = FastAPI()
    app.include_router(cache_admin_router(cache, **{"auth": TOKEN, **router_options}))
    client = TestClient(app)

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        response = client.get(path, headers=headers or {})
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content

    return get


def flask_get(cache: TieredCache, **blueprint_options: Any) -> Get:
    app = Flask(__name__)
    app.register_blueprint(cache_admin_blueprint(cache, **{"auth": TOKEN, **blueprint_options}))
    client = app.test_client()

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        response = client.get(path, headers=headers or {})
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.data

    return get


@pytest.fixture(params=["fastapi", "flask"])
def framework(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def cache() -> Iterator[TieredCache]:
    made = TieredCache(namespace="dashboard-fast")
    yield made
    made.close()


def serve(framework: str, cache: TieredCache, **options: Any) -> Get:
    return (fastapi_get if framework == "fastapi" else flask_get)(cache, **options)


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": f"Token {TOKEN}"}, 401),
    ({"Authorization": "Bearer not-the-token"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
])
def test_dashboard_refuses_requests_without_the_admin_token(framework: str, cache: TieredCache,
                                                             headers: dict[str, str], status: int) -> None:
    code, response_headers, body = serve(framework, cache)("/cache/dashboard", headers)
    assert code == status
    assert b"<canvas" not in body and b"<html" not in body
    if status == 401:  # with Basic, the challenge that makes a browser show its login prompt
        assert response_headers["www-authenticate"] == (BASIC_CHALLENGE or "Bearer")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@needs_basic
def test_dashboard_and_stats_accept_http_basic_with_the_token_as_password(framework: str, cache: TieredCache) -> None:
    get = serve(framework, cache)
    for path in ("/cache/dashboard", "/cache/stats"):
        assert get(path, basic("admin", TOKEN))[0] == 200
        assert get(path, basic("", TOKEN))[0] == 200  # any user name
        assert get(path, basic("admin", "wrong"))[0] == 401  # a wrong Basic password: the browser asks again
    assert get("/cache/dashboard", basic("admin", "wrong"))[1]["www-authenticate"] == BASIC_CHALLENGE
    assert get("/cache/stats", {})[1]["www-authenticate"] == "Bearer"  # API clients: unchanged


def test_dashboard_with_the_token_is_the_packaged_page_and_holds_no_cached_value(
        framework: str, cache: TieredCache) -> None:
    @cache.cached(ttl=60)
    def secret(n: int) -> str:
        return f"{SECRET_VALUE}-{n}"

    assert secret(1) == secret(1) == f"{SECRET_VALUE}-1"
    code, headers, body = serve(framework, cache)("/cache/dashboard", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert body == _dashboard.page()
    assert body.startswith(b"<!doctype html>")
    assert SECRET_VALUE.encode() not in body and TOKEN.encode() not in body


def test_dashboard_follows_the_prefix_and_polls_stats_relative_to_itself(framework: str, cache: TieredCache) -> None:
    option = {"prefix": "/ops/cache"} if framework == "fastapi" else {"url_prefix": "/ops/cache"}
    get = serve(framework, cache, **option)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert get("/ops/cache/dashboard", bearer)[0] == 200
    assert get("/cache/dashboard", bearer)[0] == 404
    page = _dashboard.page().decode()
    assert 'new URL("stats", location.href)' in page  # {prefix}/dashboard -> {prefix}/stats
    assert "/cache/" not in page


def test_dashboard_uses_a_custom_auth_as_the_other_admin_routes_do(framework: str, cache: TieredCache) -> None:
    """A cookie-based ``auth`` guards the page too (and the page's fetch sends cookies)."""
    if framework == "fastapi":
        def by_cookie(request: Request) -> bool:
            if "session" not in request.cookies:
                raise HTTPException(401, "log in")
            return request.cookies["session"] == "admin"

        app = FastAPI()
        app.include_router(cache_admin_router(cache, auth=by_cookie))
        client: Any = TestClient(app)
        set_cookie = client.cookies.set
    else:
        flask_app = Flask(__name__)
        flask_app.register_blueprint(cache_admin_blueprint(
            cache, auth=lambda request: None if "session" not in request.cookies
            else request.cookies["session"] == "admin"))
        client = flask_app.test_client()
        set_cookie = client.set_cookie
    assert client.get("/cache/dashboard").status_code == 401
    set_cookie("session", "guest")
    assert client.get("/cache/dashboard").status_code == 403
    set_cookie("session", "admin")
    assert client.get("/cache/dashboard").status_code == 200
    assert client.get("/cache/stats").status_code == 200
    assert 'credentials: "same-origin"' in _dashboard.page().decode()


_EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?\s*(?:https?:)?//""",
                       re.IGNORECASE)


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = _dashboard.page().decode()
    assert not _EXTERNAL.search(page)
    assert not re.search(r"https?://", page), "no absolute URL at all: everything is inline or same-origin"
    assert not re.search(r"<(?:img|iframe|object|embed)\b", page, re.IGNORECASE)
    assert re.findall(r"<link\b[^>]*>", page) == ['<link rel="icon" href="data:,">']  # no /favicon.ico request
    assert re.findall(r"<script\b[^>]*>", page) == ["<script>"]  # one inline script, no src=
    # Inline event handlers and style attributes would be refused by the CSP below.
    assert not re.search(r"\son[a-z]+\s*=", page) and not re.search(r"\sstyle\s*=", page)


def test_the_content_security_policy_allows_only_the_inline_script_and_style() -> None:
    csp = dict(part.strip().split(" ", 1) for part in _dashboard.headers()["Content-Security-Policy"].split(";"))
    page = _dashboard.page()

    def digest(tag: str) -> str:
        (body,) = re.findall(rb"<%s>(.*?)</%s>" % (tag.encode(), tag.encode()), page, re.DOTALL)
        return "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"

    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == digest("script")
    assert csp["style-src"] == digest("style")
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"


def test_the_page_is_package_data() -> None:
    """``dashboard.html`` sits next to the module that loads it (pyproject ships
    ``contrib/*.html`` in the wheel)."""
    path = Path(_dashboard.__file__).with_name("dashboard.html")
    assert path.read_bytes() == _dashboard.page()


# =========================================================================================
# The browser test: headless Chromium against a live uvicorn app
# =========================================================================================

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APT_TIMEOUT = 600  # seconds, per apt-get call
SCREENSHOT = ROOT / "build" / "dashboard.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000",
]


def _install_chromium() -> str | None:
    """Install Debian's chromium and chromium-driver if missing; the reason when impossible."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"{CHROMIUM} or {CHROMEDRIVER} is missing and this is not a root Debian system: "
                "install them with 'apt-get install -y chromium chromium-driver' (make deps does)")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"]):
        try:
            done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=APT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command)} did not finish within {APT_TIMEOUT} s"
        if done.returncode != 0:
            return f"{' '.join(command)} failed ({done.returncode}): {(done.stderr or done.stdout)[-400:]}"
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return f"apt-get installed chromium but {CHROMIUM} or {CHROMEDRIVER} is still missing"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, installed first when missing (session-scoped: the watchdog of
    each test does not count the download)."""
    reason = _install_chromium()
    if reason is not None:
        pytest.skip(reason)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebDriverError(Exception):
    pass


class WebDriver:
    """Just enough of the W3C WebDriver protocol (plus chromedriver's CDP passthrough),
    over HTTP with urllib: every call has a timeout."""

    def __init__(self, chromedriver: str, chromium: str, profile: str, timeout: float = 30.0) -> None:
        self.port = _free_port()
        self.timeout = timeout
        self.log = tempfile.TemporaryFile()
        # The browser is not ours to sanitize: `make asan-test` preloads the ASan runtime
        # into every process it starts, which chromedriver and Chromium refuse.
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")}
        self.process = subprocess.Popen([chromedriver, f"--port={self.port}"], stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session: str | None = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._call("GET", "/status", session=False).get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.process.kill()
                self.process.wait(10)
                self.log.close()
                raise WebDriverError(f"chromedriver did not start: {output}")
            time.sleep(0.05)
        capabilities = {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": int(timeout * 1000), "pageLoad": int(timeout * 1000), "implicit": 0},
        }}
        self.session = self._call("POST", "/session", {"capabilities": capabilities}, session=False)["sessionId"]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def _call(self, method: str, path: str, payload: Any = None, *, session: bool = True) -> Any:
        url = self.base + (f"/session/{self.session}" if session else "") + path
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
        value = answer.get("value")
        if isinstance(value, dict) and "error" in value:
            raise WebDriverError(f"{method} {path}: {value['error']}: {value.get('message', '')[:500]}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def cdp(self, command: str, **params: Any) -> Any:
        return self._call("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def find(self, css: str) -> str:
        found = self._call("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def console(self) -> list[dict[str, Any]]:
        try:
            return self._call("POST", "/se/log", {"type": "browser"})
        except WebDriverError:
            return []

    def quit(self) -> None:
        try:
            if self.session is not None:
                self._call("DELETE", "")
        except (OSError, WebDriverError):
            pass
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.log.close()


class LiveServer:
    """A uvicorn server for ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, http="h11", ws="none", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="dashboard-uvicorn")

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


class Traffic:
    """Requests to the app's cached endpoints from a thread until stopped: hits and misses
    in L1, L2 hits once L1 (40 entries) evicts what Redis still holds."""

    def __init__(self, base: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=base, timeout=5)
        self.random = random.Random(5)
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="dashboard-traffic")

    def burst(self, n: int) -> None:
        for _ in range(n):
            kind = self.random.choice(("products", "products", "products", "prices", "profile"))
            ident = self.random.randrange({"products": 120, "prices": 15, "profile": 4}[kind])
            assert self.client.get(f"/{kind}/{ident}").status_code == 200
            self.requests += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.burst(5)
            self.stop.wait(0.01)

    def __enter__(self) -> Traffic:
        self.burst(300)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)
        self.client.close()


def dashboard_app(cache: TieredCache) -> FastAPI:
    app = FastAPI(lifespan=tieredcache_lifespan(cache))

    @cache.cached(ttl=300)
    def product(product_id: int) -> dict[str, Any]:
        time.sleep(0.003)  # "the database"
        return {"id": product_id, "name": f"product {product_id}"}

    @cache.cached(ttl=300)
    async def price(product_id: int) -> dict[str, Any]:
        return {"id": product_id, "cents": 100 + product_id}

    @cache.cached(ttl=300)
    def profile(user_id: int) -> dict[str, Any]:
        time.sleep(0.02)
        return {"id": user_id}

    @app.get("/products/{product_id}")
    def get_product(product_id: int) -> dict[str, Any]:
        return product(product_id)

    @app.get("/prices/{product_id}")
    async def get_price(product_id: int) -> dict[str, Any]:
        return await price(product_id)

    @app.get("/profile/{user_id}")
    def get_profile(user_id: int) -> dict[str, Any]:
        return profile(user_id)

    app.include_router(cache_admin_router(cache, auth=TOKEN, prefix="/admin/cache"))
    return app


@pytest.fixture
def live_cache(request: pytest.FixtureRequest) -> Iterator[TieredCache]:
    """With Redis when redis-server is installed (so L2 has traffic too), else L1 only."""
    url = request.getfixturevalue("redis_url") if shutil.which("redis-server") else None
    made = TieredCache(redis_url=url, namespace="dashboard", max_entries=40, max_bytes=64 * 1024)
    yield made
    made.close()


@pytest.fixture
def live(live_cache: TieredCache) -> Iterator[str]:
    """The app's base URL, served by uvicorn and under steady traffic."""
    pytest.importorskip("uvicorn", reason="the browser tests serve the app with uvicorn (test extra)")
    with LiveServer(dashboard_app(live_cache)) as server, Traffic(server.url):
        yield server.url


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Page]:
    driver = WebDriver(CHROMEDRIVER, chromium, str(tmp_path / "profile"))
    try:
        yield Page(driver)
    finally:
        driver.quit()


class Page:
    """The dashboard as the tests see it: its state and elements, with bounded waits."""

    WAIT = 30.0  # seconds: the bound on every wait

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def state(self) -> dict[str, Any]:
        return self.driver.js("return window.__tcDashboard || null") or {}

    def text(self, css: str) -> str:
        return self.driver.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css)

    def visible(self, css: str) -> bool:
        return bool(self.driver.js("const e = document.querySelector(arguments[0]);"
                                   "return !!e && !e.closest('[hidden]') && e.offsetParent !== null", css))

    def wait(self, what: str, condition: Callable[[], Any]) -> None:
        deadline = time.monotonic() + self.WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {self.WAIT} s waiting for {what}; page state "
                                     f"{self.state()}; console {self.driver.console()[-5:]}")
            time.sleep(0.1)

    def polled(self, n: int) -> bool:
        state = self.state()
        return state.get("polls", 0) >= n and state["points"]["l1"] >= 2

    def problems(self) -> list[str]:
        """Console errors but the refused loads of a sign-in (401/403): a script error or
        anything the Content-Security-Policy blocked."""
        return [entry["message"] for entry in self.driver.console()
                if entry.get("level") == "SEVERE" and not re.search(r"status of 40[13]", entry["message"])]


def test_dashboard_renders_live_statistics_in_headless_chromium(live: str, browser: Page,
                                                                live_cache: TieredCache) -> None:
    driver = browser.driver
    # The page itself needs the token: the browser sends it with the navigation (as a
    # reverse proxy or an extension would), then forgets it, so the page's own polls get
    # 401 and it asks for the token.
    driver.cdp("Network.enable")
    driver.cdp("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {TOKEN}"})
    driver.get(live + "/admin/cache/dashboard?interval=0.5")
    driver.cdp("Network.setExtraHTTPHeaders", headers={})
    browser.wait("the token form", lambda: browser.visible("#token"))
    assert browser.state()["lastError"] == "HTTP 401"

    driver.type("#token", "not-the-token")
    driver.click("#auth button")
    browser.wait("the wrong token to be refused", lambda: "403" in browser.text("#auth-message"))
    assert driver.js("return sessionStorage.length") == 0

    driver.type("#token", TOKEN)
    driver.click("#auth button")
    browser.wait("three polls with hit-rate points", lambda: browser.polled(3))
    assert driver.js("return sessionStorage.getItem('tieredcache.dashboard.token')") == TOKEN
    assert not browser.visible("#token")

    shown = browser.state()
    assert shown["lastError"] is None
    charts = shown["charts"]
    assert charts["hitRate"] >= 2 and charts["memory"] == 2
    assert charts["latency"] >= 3  # an L1-hit and a load row for each function at least
    assert charts["topCalls"] == 3 and charts["topSaved"] >= 1
    rendered = driver.js("return [...document.querySelectorAll('canvas')]"
                         ".map(c => [c.id, c.dataset.rendered, +c.dataset.points])")
    assert len(rendered) == 6 and all(flag == "true" and points > 0 for _, flag, points in rendered), rendered
    if live_cache.stats()["l2"]["enabled"]:
        browser.wait("L2 hit-rate points", lambda: browser.state()["points"]["l2"] >= 1)
        assert browser.text("#redis").count("connected") == 1
    table = browser.text("#latency-table")
    assert "product" in table and "price" in table and "profile" in table
    assert TOKEN not in driver.js("return document.documentElement.outerHTML")
    assert not browser.problems()

    # The whole page in one screenshot: a viewport as tall as the document.
    height = driver.js("return Math.ceil(document.documentElement.scrollHeight)")
    driver.cdp("Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False)
    polls = browser.state()["polls"]
    browser.wait("a poll drawn at the full size", lambda: browser.state()["polls"] >= polls + 1)
    png = base64.b64decode(driver.cdp("Page.captureScreenshot", format="png")["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)


@needs_basic
def test_the_browser_login_prompt_opens_the_dashboard_without_the_form(live: str, browser: Page) -> None:
    """HTTP Basic with the token as the password (what the browser's own prompt sends; here
    given in the URL): the page loads, and the browser sends the same credentials with the
    page's polls of ./stats, so the token form never shows."""
    browser.driver.get(live.replace("http://", f"http://admin:{TOKEN}@") + "/admin/cache/dashboard?interval=0.5")
    browser.wait("three polls with hit-rate points", lambda: browser.polled(3))
    assert not browser.visible("#token")
    assert browser.driver.js("return sessionStorage.length") == 0
    assert not browser.problems()
