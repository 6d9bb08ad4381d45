"""@cache.cached, @cache.invalidates, warmers, presets and the default cache.

Read top to bottom, this is the behaviour docs/decorators.md promises: what a key is made
of, when the function runs, what an invalidation drops, what the counters say.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import gc
import inspect
import os
import subprocess
import sys
import threading
import uuid
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tieredcache
from tieredcache import TieredCache, _keys
from tieredcache.testing import advance_clock

from tiered_helpers import rawr, redis_caches, wait_until  # noqa: F401 - fixtures


@pytest.fixture
def cache():
    c = TieredCache(namespace="deco")
    yield c
    c.close()


class Calls:
    """Counts how often the real function ran."""

    def __init__(self):
        self.n = 0

    def __call__(self, *args):
        self.n += 1
        return args


# ---- the basics --------------------------------------------------------------------------


def test_the_function_runs_once_then_hits_come_from_l1(cache):
    runs = Calls()

    @cache.cached(ttl=60)
    def get_profile(org_id, lite=False):
        return runs(org_id, lite)

    assert get_profile(1) == (1, False)
    assert get_profile(1) == (1, False)
    assert runs.n == 1
    assert get_profile(2) == (2, False)
    assert runs.n == 2


def test_positional_keyword_and_default_spellings_of_a_call_share_one_entry(cache):
    runs = Calls()

    @cache.cached()
    def f(a, b=2, *, c="x"):
        return runs(a, b, c)

    f(1)
    f(a=1)
    f(1, 2)
    f(1, b=2, c="x")
    f(c="x", b=2, a=1)
    assert runs.n == 1
    assert f.cache_key(1) == f.cache_key(a=1, b=2, c="x") == f"{__name__}.test_positional_keyword_and_default_" \
        "spellings_of_a_call_share_one_entry.<locals>.f(1,2,'x')"


def test_a_call_that_does_not_bind_raises_the_usual_type_error(cache):
    @cache.cached()
    def f(a, b=2):
        return a

    with pytest.raises(TypeError):
        f()
    with pytest.raises(TypeError):
        f(1, 2, 3)
    with pytest.raises(TypeError):
        f(1, c=3)
    with pytest.raises(TypeError):
        f(1, a=1)


def test_entries_expire_after_their_ttl(cache):
    runs = Calls()

    @cache.cached(ttl=10)
    def f(x):
        return runs(x)

    f(1)
    advance_clock(9)
    f(1)
    assert runs.n == 1
    advance_clock(2)
    f(1)
    assert runs.n == 2


def test_ttl_accepts_the_named_tiers(cache):
    @cache.cached(ttl="analytics")
    def f(x):
        return x

    f(1)
    left = cache._core.l1.ttl(cache._ns.l1prefix + f.cache_key(1))
    assert 1790 < left <= 1800


def test_exceptions_propagate_and_are_not_cached(cache):
    runs = Calls()

    @cache.cached()
    def f(x):
        runs(x)
        raise LookupError("no such row")

    for _ in range(2):
        with pytest.raises(LookupError):
            f(1)
    assert runs.n == 2
    assert f.stats()["errors"] == 2


def test_the_decorated_function_looks_like_the_original(cache):
    def get_profile(org_id: int, lite: bool = False) -> dict:
        """Docs."""
        return {}

    wrapped = cache.cached()(get_profile)
    assert wrapped.__name__ == "get_profile"
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is get_profile
    assert inspect.signature(wrapped) == inspect.signature(get_profile)
    assert wrapped.uncached is get_profile
    assert wrapped.cache is cache


def test_helpers_invalidate_one_call_and_expose_its_key(cache):
    runs = Calls()

    @cache.cached()
    def f(x):
        return runs(x)

    f(1), f(2)
    assert f.invalidate(1) is True
    assert f.invalidate(1) is False
    f(1), f(2)
    assert runs.n == 3
    assert cache.get(f.cache_key(2)) == (2,)
    assert f.uncached(5) == (5,) and runs.n == 4


# ---- keys ----------------------------------------------------------------------------------


def test_keys_encode_each_type_distinctly():
    enc = lambda v: _keys.encode_args([("a", v)])  # noqa: E731
    assert enc(1) == "1"
    assert enc(True) == "True"
    assert enc(1.0) == "1.0"
    assert enc("1") == "'1'"
    assert enc(b"1") == "b'1'"
    assert enc(None) == "None"
    assert enc((1,)) == "(1)"
    assert enc([1, "a"]) == "[1,'a']"
    assert enc({"b": 1, "a": 2}) == "{'a':2,'b':1}"
    assert enc({3, 1}) == "set{1,3}"
    assert enc(frozenset()) == "frozenset{}"
    assert enc(datetime.date(2024, 1, 2)) == "datetime.date(2024, 1, 2)"
    assert enc(decimal.Decimal("1.10")) == "Decimal('1.10')"
    u = uuid.UUID(int=5)
    assert enc(u) == repr(u)


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Account:
    def __init__(self, number):
        self.number = number

    def __cache_key__(self):
        return self.number


class Session:
    """Stands for a database session: not data."""


def test_enums_dataclasses_and_cache_key_hooks_make_stable_keys():
    enc = lambda v: _keys.encode_args([("a", v)])  # noqa: E731
    assert enc(Color.RED) == f"{__name__}.Color.RED"
    assert enc(Point(1, 2)) == f"{__name__}.Point(x=1,y=2)"
    assert enc(Account("A-1")) == f"{__name__}.Account<'A-1'>"


def test_an_argument_without_a_stable_key_is_refused_by_name(cache):
    @cache.cached()
    def get_profile(org_id, db):
        return org_id

    with pytest.raises(TypeError, match=r"argument 'db' of type Session has no stable cache key.*exclude=\('db',\)"):
        get_profile(1, Session())


def test_exclude_leaves_a_db_session_out_of_the_key(cache):
    runs = Calls()

    @cache.cached(exclude=("db",))
    def get_profile(org_id, db):
        return runs(org_id)

    get_profile(1, Session())
    get_profile(1, Session())
    assert runs.n == 1
    assert get_profile.cache_key(1, None).endswith("get_profile(1)")


def test_exclude_must_name_arguments():
    c = TieredCache()
    with pytest.raises(ValueError, match="exclude names 'dbb'"):
        c.cached(exclude=("dbb",))(lambda db: db)
    with pytest.raises(TypeError, match="exclude"):
        c.cached(exclude=(1,))(lambda db: db)


def test_self_and_cls_stay_out_of_method_keys(cache):
    runs = Calls()

    class ProfileService:
        @cache.cached()
        def get(self, org_id):
            return runs(org_id)

    a, b = ProfileService(), ProfileService()
    assert a.get(1) == (1,)
    assert b.get(1) == (1,)
    assert runs.n == 1
    assert ProfileService.get.cache_key(a, 1).endswith("ProfileService.get(1)")


def test_long_argument_lists_are_hashed_but_keep_the_name(cache):
    @cache.cached()
    def f(text):
        return len(text)

    key = f.cache_key("x" * 1000)
    assert key.startswith(f"{f.qualname}(#") and len(key) < len(f.qualname) + 40
    assert f("x" * 1000) == 1000 and f("x" * 1000) == 1000
    assert f.cache_key("x" * 1000) != f.cache_key("x" * 999 + "y")


def test_keys_are_the_same_in_another_process_with_another_hash_seed(tmp_path):
    script = tmp_path / "keys.py"
    script.write_text(
        "import datetime, tieredcache\n"
        "c = tieredcache.TieredCache()\n"
        "@c.cached(name='k')\n"
        "def f(a, b=None, *, c=()):\n"
        "    return 1\n"
        "print(f.cache_key('x', {'z': 1, 'a': {3, 2, 1}}, c=(1.5, b'q', datetime.date(2020, 1, 1))))\n"
    )
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        outs.add(subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert len(outs) == 1
    assert outs.pop().strip() == "k('x',{'a':set{1,2,3},'z':1},(1.5,b'q',datetime.date(2020, 1, 1)))"


# Values of many types, nested: equal keys must mean equal arguments (type and value).
leaf = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
        | st.binary(max_size=4) | st.dates() | st.decimals(allow_nan=False, places=2) | st.sampled_from(list(Color)))
values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
                      | st.frozensets(st.integers() | st.text(max_size=3), max_size=3), max_leaves=8)


def strict(v):
    """A value with its types spelled out, for comparing arguments type-strictly."""
    t = type(v)
    if t in (list, tuple):
        return (t.__name__, tuple(strict(x) for x in v))
    if t is dict:
        return ("dict", frozenset((strict(k), strict(x)) for k, x in v.items()))
    if t is frozenset:
        return ("frozenset", frozenset(strict(x) for x in v))
    if t is float and v == 0.0:
        return ("float", str(v))  # 0.0 and -0.0 are different arguments
    return (t.__name__, v)


@settings(max_examples=400, deadline=None)
@given(a=st.lists(values, min_size=1, max_size=3), b=st.lists(values, min_size=1, max_size=3))
def test_keys_are_injective_property(a, b):
    ka = _keys.encode_args([(str(i), v) for i, v in enumerate(a)])
    kb = _keys.encode_args([(str(i), v) for i, v in enumerate(b)])
    if ka == kb:
        assert [strict(x) for x in a] == [strict(x) for x in b]
    else:
        assert [strict(x) for x in a] != [strict(x) for x in b]


primitive = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
             | st.integers(min_value=-2**70, max_value=2**70))


@settings(max_examples=500, deadline=None)
@given(args=st.lists(primitive, min_size=3, max_size=3), kw=st.booleans())
def test_the_c_key_builder_writes_exactly_the_python_key_or_defers(args, kw):
    c = TieredCache(namespace="ns")

    @c.cached()
    def f(a, b, c=None):
        return 1

    f(*args)  # binds the C path to the cache
    built = f._key(a=args[0], b=args[1], c=args[2]) if kw else f._key(*args)
    expected = c._ns.l1prefix + f.cache_key(*args)
    assert built is None or built == expected
    if all(type(x) in (int, bool, type(None)) and abs(x or 0) < 2**63 for x in args):
        assert built == expected  # these never defer
    c.close()


def test_the_c_path_covers_text_bytes_dates_and_decimals_and_defers_on_the_rest(cache):
    runs = Calls()

    @cache.cached()
    def f(day, name, extra=None):
        return runs(day, name)

    d = datetime.date(2024, 5, 1)
    f(d, "zoë")
    f(d, "zoë")
    assert runs.n == 1
    assert f.stats()["l1_hits"] == 1
    prefix = cache._ns.l1prefix
    for args in ((d, "zoë"), (datetime.datetime(2024, 5, 1, 12, 30), "it's"), (decimal.Decimal("1.10"), b"\x00"),
                 (datetime.timedelta(seconds=5), "\n"), (datetime.time(1, 2), "日本")):
        assert f._key(*args) == prefix + f.cache_key(*args)
    assert f._key(Point(1, 2), "x") is None  # other types: the Python path, same key
    f(Point(1, 2), "x"), f(Point(1, 2), "x")
    assert runs.n == 2


c_args = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.binary(max_size=6)
          | st.dates() | st.datetimes() | st.times() | st.timedeltas() | st.decimals(places=3)
          | st.integers(min_value=-2**70, max_value=2**70))


@settings(max_examples=500, deadline=None)
@given(args=st.lists(c_args, min_size=2, max_size=2), kw=st.booleans())
def test_c_keys_equal_python_keys_for_every_type_the_c_path_takes(args, kw):
    c = TieredCache(namespace="ns")

    @c.cached(key="t:{a}:{b}")
    def t(a, b):
        return 1

    @c.cached()
    def f(a, b):
        return 1

    f(*args), t(*args)
    for fn in (f, t):
        built = fn._key(a=args[0], b=args[1]) if kw else fn._key(*args)
        try:
            expected = c._ns.l1prefix + fn.cache_key(*args)
        except TypeError:
            continue  # a template refuses this value: so must the call
        assert built == expected
    c.close()


def test_a_namespace_that_is_not_ascii_takes_the_python_path():
    c = TieredCache(namespace="café")

    @c.cached()
    def f(a):
        return [a]

    assert f(1) == f(1) == [1]
    assert f._armed is False and f.stats()["l1_hits"] == 1
    c.close()


# ---- templates -------------------------------------------------------------------------


def test_key_and_tag_templates_use_argument_names(cache):
    runs = Calls()

    @cache.cached(key="slots:{shop_id}:{date}", tags=["shop:{shop_id}", "slots"])
    def available_slots(shop_id, date, db=None):
        return runs(shop_id, date)

    available_slots(42, "2024-05-01")
    assert cache.get("slots:42:2024-05-01") == (42, "2024-05-01")
    available_slots(42, "2024-05-01")
    assert runs.n == 1
    assert available_slots._key(42, "2024-05-01") == cache._ns.l1prefix + "slots:42:2024-05-01"
    cache.invalidate_tags("shop:7")
    available_slots(42, "2024-05-01")
    assert runs.n == 1
    cache.invalidate_tags("shop:42")
    available_slots(42, "2024-05-01")
    assert runs.n == 2


def test_templates_support_attributes_and_format_specs(cache):
    @dataclasses.dataclass
    class User:
        id: int

    @cache.cached(key="dash:{user.id}:{day:%Y-%m-%d}")
    def dashboard(user, day):
        return user.id

    assert dashboard.cache_key(User(7), datetime.date(2024, 1, 2)) == "dash:7:2024-01-02"
    assert dashboard(User(7), datetime.date(2024, 1, 2)) == 7
    assert cache.get("dash:7:2024-01-02") == 7


def test_templates_are_checked_when_decorating(cache):
    with pytest.raises(ValueError, match="names 'shop', which is not an argument"):
        cache.cached(key="slots:{shop}")(lambda shop_id: 1)
    with pytest.raises(ValueError, match="fields must name arguments"):
        cache.cached(key="slots:{}")(lambda shop_id: 1)
    with pytest.raises(ValueError, match="names 'x'"):
        cache.cached(tags=["t:{x}"])(lambda shop_id: 1)


def test_a_template_refuses_a_value_whose_text_is_its_address(cache):
    @cache.cached(key="p:{db}")
    def f(db):
        return 1

    with pytest.raises(TypeError, match="whose text is its address"):
        f(Session())


# ---- bad input ------------------------------------------------------------------------------


def test_bad_decorator_arguments_raise_clear_errors(cache):
    with pytest.raises(ValueError, match="ttl"):
        cache.cached(ttl=-1)
    with pytest.raises(ValueError, match="ttl must be seconds or one of"):
        cache.cached(ttl="fortnight")
    with pytest.raises(TypeError, match="ttl"):
        cache.cached(ttl=[1])
    with pytest.raises(TypeError, match="parentheses"):
        cache.cached(lambda x: x)
    with pytest.raises(TypeError, match="tags"):
        cache.cached(tags=[1])(lambda x: x)
    with pytest.raises(TypeError, match="generator"):
        @cache.cached()
        def gen(x):
            yield x
    with pytest.raises(ValueError, match="needs tags or keys"):
        cache.invalidates()
    with pytest.raises(TypeError, match="name"):
        cache.cached(name="")


# ---- async ---------------------------------------------------------------------------------


def test_async_functions_stay_coroutine_functions_and_hit_without_running(cache):
    runs = Calls()

    @cache.cached(ttl=60)
    async def get_orders(shop_id, status="open"):
        await asyncio.sleep(0)
        return runs(shop_id, status)

    assert inspect.iscoroutinefunction(get_orders)
    assert asyncio.iscoroutinefunction(get_orders)

    async def main():
        assert await get_orders(1) == (1, "open")
        assert await get_orders(shop_id=1) == (1, "open")
        assert await get_orders(1, "open") == (1, "open")

    asyncio.run(main())
    assert runs.n == 1
    s = get_orders.stats()
    assert (s["calls"], s["hits"], s["misses"]) == (3, 2, 1)


def test_concurrent_async_misses_run_the_function_once(cache):
    runs = Calls()
    gate = None

    @cache.cached()
    async def slow(x):
        await gate.wait()
        return runs(x)

    async def main():
        nonlocal gate
        gate = asyncio.Event()
        tasks = [asyncio.create_task(slow(1)) for _ in range(10)]
        await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == [(1,)] * 10
    assert runs.n == 1


def test_concurrent_sync_misses_run_the_function_once(cache):
    runs = Calls()
    gate = threading.Event()

    @cache.cached()
    def slow(x):
        gate.wait(5)
        return runs(x)

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: len(cache._core.flights) == 1)
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [(1,)] * 8
    assert runs.n == 1


# ---- invalidation on writes --------------------------------------------------------------


def test_invalidates_runs_after_success_and_never_after_an_exception(cache):
    runs = Calls()

    @cache.cached(tags=["order:{order_id}", "orders"])
    def get_order(order_id):
        return runs(order_id)

    @cache.invalidates(tags=["order:{order_id}"])
    def pay(order_id, amount):
        if amount <= 0:
            raise ValueError("amount must be positive")
        return "paid"

    get_order(1), get_order(2)
    with pytest.raises(ValueError):
        pay(1, 0)
    get_order(1)
    assert runs.n == 2  # the failed write invalidated nothing
    assert pay(1, 10) == "paid"
    get_order(1), get_order(2)
    assert runs.n == 3  # order 1 reloaded, order 2 untouched


def test_invalidates_deletes_key_templates(cache):
    @cache.cached(key="balance:{phone}")
    def balance(phone):
        return 100

    @cache.invalidates(keys=["balance:{phone}"], tags="billing")
    def charge(phone, amount):
        return amount

    balance("555")
    assert cache.get("balance:555") == 100
    charge("555", 5)
    assert cache.get("balance:555") is None


def test_async_invalidates(cache):
    runs = Calls()

    @cache.cached(tags=["profile:{org_id}"])
    async def profile(org_id):
        return runs(org_id)

    @cache.invalidates(tags=["profile:{org_id}"])
    async def update_profile(org_id, data):
        return data

    async def main():
        await profile(1)
        await update_profile(1, {"name": "x"})
        await profile(1)

    asyncio.run(main())
    assert runs.n == 2


# ---- the default cache and presets -----------------------------------------------------


@pytest.fixture
def default_cache():
    c = tieredcache.configure(TieredCache(namespace="default-test"))
    yield c
    tieredcache.reset_default_cache()
    c.close()


def test_module_level_decorators_use_the_configured_default_cache(default_cache):
    runs = Calls()

    @tieredcache.cached(ttl=30)
    def f(x):
        return runs(x)

    f(1), f(1)
    assert runs.n == 1
    assert default_cache.get(f.cache_key(1)) == (1,)
    other = tieredcache.configure(TieredCache(namespace="other"))
    try:
        f(1)
        assert runs.n == 2  # re-bound to the new default: an empty cache
        assert other.get(f.cache_key(1)) == (1,)
    finally:
        other.close()


def test_the_default_cache_comes_from_the_environment(monkeypatch):
    tieredcache.reset_default_cache()
    monkeypatch.setenv("CACHE_ENABLED", "false")
    monkeypatch.setenv("CACHE_NAMESPACE", "from-env")
    runs = Calls()

    @tieredcache.cached()
    def f(x):
        return runs(x)

    try:
        f(1), f(1)
        assert runs.n == 2  # CACHE_ENABLED=false: every call runs the function
        assert tieredcache.get_cache().name == "from-env"
    finally:
        tieredcache.reset_default_cache()


def test_configure_checks_its_arguments():
    with pytest.raises(TypeError, match="cache must be a TieredCache"):
        tieredcache.configure("redis://x")
    with pytest.raises(TypeError, match="not both"):
        tieredcache.configure(TieredCache(), namespace="x")


def test_presets_have_the_seeds_ttls_and_tags(default_cache):
    runs = Calls()

    @tieredcache.cache_appointment_slots()
    def get_available_slots(db, date):
        return runs(date)

    @tieredcache.cache_analytics_data("revenue_dashboard")
    def get_revenue_dashboard(user_id):
        return runs(user_id)

    @tieredcache.cache_business_intelligence()
    def kpis(shop):
        return runs(shop)

    @tieredcache.cache_static_reference_data()
    def services():
        return runs()

    @tieredcache.invalidate_appointment_cache
    def create_appointment(data):
        return data

    # the seeds pass a DB session first: leave it out with exclude=
    slots = tieredcache.cache_appointment_slots(exclude="db")(get_available_slots.uncached)
    l1, p = default_cache._core.l1, default_cache._ns.l1prefix
    slots(Session(), "2024-05-01")
    get_revenue_dashboard(7), kpis("s1"), services()
    assert get_revenue_dashboard.cache_key(7) == "analytics:revenue_dashboard(7)"
    for fn, args, ttl in ((slots, (None, "2024-05-01"), 300), (get_revenue_dashboard, (7,), 1800),
                          (kpis, ("s1",), 900), (services, (), 3600)):
        left = l1.ttl(p + fn.cache_key(*args))
        assert ttl - 5 < left <= ttl, fn
    assert tieredcache.TTL.REAL_TIME == 60 and tieredcache.TTL.USER_DATA == 300
    create_appointment({"when": "10:00"})
    assert l1.get(p + slots.cache_key(None, "2024-05-01")) is None
    assert l1.get(p + get_revenue_dashboard.cache_key(7)) is not None
    default_cache.invalidate_tags("analytics:revenue_dashboard")
    assert l1.get(p + get_revenue_dashboard.cache_key(7)) is None


# ---- warming -----------------------------------------------------------------------------


def test_warmers_fill_groups_and_report_counts(cache):
    catalog = {"p1": 10, "p2": 20}
    runs = Calls()

    @cache.cached()
    def dashboard(shop):
        return runs(shop)

    @cache.warmer("products")
    def warm_products():
        return {f"product:{k}": v for k, v in catalog.items()}

    @cache.warmer("products")
    def warm_more():
        return [("product:p3", 30)]

    @cache.warmer("dashboard")
    def warm_dashboard():
        for shop in ("a", "b", "c"):
            dashboard(shop)

    assert cache.warmer_groups() == ["dashboard", "products"]
    assert cache.warm("products") == {"products": 3}
    assert cache.get("product:p1") == 10 and cache.get("product:p3") == 30
    assert cache.warm() == {"dashboard": 3, "products": 3}
    assert cache.warm("all") == {"dashboard": 0, "products": 3}  # dashboards were already cached
    assert runs.n == 3
    with pytest.raises(ValueError, match="no warmer registered for group 'customers'"):
        cache.warm("customers")


def test_a_namespace_view_warms_its_own_tenant(cache):
    @cache.warmer("products")
    def warm(view):
        return {"catalog": view.name}

    shop42 = cache.namespace("shop:42")
    assert shop42.warm("products") == {"products": 1}
    assert shop42.get("catalog") == "deco/shop:42"
    assert cache.get("catalog") is None
    assert cache.namespace("shop:7").get("catalog") is None


def test_async_warmers_run_with_awarm(cache):
    @cache.warmer("customers")
    async def warm_customers():
        await asyncio.sleep(0)
        return {"customer:1": "ann"}

    @cache.warmer("customers")
    def warm_sync():
        return 4

    assert asyncio.run(cache.awarm("customers")) == {"customers": 5}
    assert cache.get("customer:1") == "ann"
    assert cache.warm("customers") == {"customers": 5}  # no loop running: run to completion

    async def inside_a_loop():
        with pytest.raises(RuntimeError, match="awarm"):
            cache.warm("customers")

    asyncio.run(inside_a_loop())


def test_module_level_warmers_belong_to_every_default_cache(default_cache):
    @tieredcache.warmer("static")
    def warm_static():
        return {"services": ["cut", "shave"]}

    assert tieredcache.warm("static") == {"static": 1}
    assert default_cache.get("services") == ["cut", "shave"]
    other = tieredcache.configure(TieredCache(namespace="other2"))
    try:
        assert "static" in other.warmer_groups()
    finally:
        other.close()


def test_warmer_arguments_are_checked(cache):
    with pytest.raises(ValueError, match="group"):
        cache.warmer("all")
    with pytest.raises(TypeError, match="group name"):
        cache.warmer(lambda: 1)

    @cache.warmer("bad")
    def bad():
        return [1, 2]

    with pytest.raises(TypeError, match="pairs"):
        cache.warm("bad")


# ---- counters, report, listeners ---------------------------------------------------------


def test_report_counts_a_scripted_workload_exactly(cache):
    @cache.cached()
    def profile(org_id):
        return {"org": org_id}

    @cache.cached()
    def orders(shop_id):
        return [shop_id]

    for org in (1, 2, 1, 1, 2, 3):
        profile(org)
    orders(1)
    rows = {r["function"]: r for r in cache.report()}
    p = rows[profile.qualname]
    assert (p["calls"], p["hits"], p["l1_hits"], p["l2_hits"], p["misses"]) == (6, 3, 3, 0, 3)
    assert p["hit_rate"] == 0.5
    assert p["namespace"] == "deco"
    assert p["avg_uncached_ms"] > 0 and p["avg_miss_ms"] >= p["avg_uncached_ms"]
    assert rows[orders.qualname]["calls"] == 1
    assert [r["function"] for r in cache.report()][0] == profile.qualname  # busiest first


def test_recommendations_flag_a_low_hit_rate(cache):
    @cache.cached(ttl=5)
    def by_timestamp(ts):
        return ts

    for i in range(30):
        by_timestamp(i)
    kinds = {(r["kind"], r["function"]) for r in cache.recommendations()}
    assert ("low_hit_rate", by_timestamp.qualname) in kinds


def test_health_reports_l1_only_as_ok(cache):
    h = cache.health()
    assert h["status"] == "ok"
    assert h["l2"] == {"enabled": False, "connected": False, "breaker": "closed", "ping_ms": None}
    assert set(h["l1"]) == {"entries", "max_entries", "bytes", "max_bytes"}


def test_listeners_hear_writes_and_never_reads(cache):
    events = []
    cache.add_listener(lambda e, d: events.append((e, d)))
    cache.set("a", 1, tags=["t"])
    cache.get("a")
    cache.delete("a")
    cache.invalidate_tags("t", "u")
    cache.invalidate_prefix("p:")
    cache.namespace("x").clear()
    assert events == [
        ("delete", {"key": "a", "namespace": "deco"}),
        ("invalidate_tags", {"tags": ["t", "u"], "namespace": "deco"}),
        ("invalidate_prefix", {"prefix": "p:", "namespace": "deco"}),
        ("clear", {"namespace": "deco/x"}),
    ]
    with pytest.raises(TypeError):
        cache.add_listener(1)
    with pytest.raises(ValueError):
        cache.remove_listener(print)


# ---- web frameworks' arguments ------------------------------------------------------------


def test_fastapi_requests_and_depends_stay_out_of_keys(cache):
    from fastapi import Depends, Request

    def get_db():
        return Session()

    @cache.cached()
    def handler(org_id: int, request: Request, db: Session = Depends(get_db)):
        return org_id

    assert handler.cache_key(5, object(), Session()).endswith("handler(5)")


# ---- lifetime ----------------------------------------------------------------------------


def test_a_decorated_function_is_collected_with_its_cache_entries_alive(cache):
    @cache.cached()
    def f(x):
        return [x]

    f(1)
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None
    assert cache.report() == []


def test_hits_and_misses_do_not_leak_references(cache):
    value = object()

    @cache.cached()
    def f(x):
        return value

    f(0)
    before = sys.getrefcount(value)
    for i in range(20000):
        f(i % 50)  # hits and misses
    cache.clear()
    gc.collect()
    assert sys.getrefcount(value) == before - 1  # only the cleared entry's reference left


def test_rebinding_while_other_threads_hit_is_safe():
    a, b = TieredCache(namespace="a"), TieredCache(namespace="b")
    tieredcache.configure(a)

    @tieredcache.cached()
    def f(x):
        return x * 2

    stop = threading.Event()
    errors = []

    def hammer():
        try:
            while not stop.is_set():
                assert f(3) == 6
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        tieredcache.configure(a if i % 2 else b)
    stop.set()
    for t in threads:
        t.join(10)
    tieredcache.reset_default_cache()
    a.close(), b.close()
    assert errors == []


# ---- with Redis ---------------------------------------------------------------------------


def test_a_second_process_reads_the_entry_from_redis_and_counts_an_l2_hit(redis_caches):
    one, two = redis_caches(), redis_caches()
    runs = Calls()

    def define(c):
        @c.cached(ttl=60, tags=["org:{org_id}"])
        def profile(org_id):
            return list(runs(org_id))
        return profile

    p1, p2 = define(one), define(two)
    assert p1(1) == [1]
    assert p2(1) == [1]
    assert runs.n == 1
    assert p2.stats()["l2_hits"] == 1
    one.invalidate_tags("org:1")
    assert wait_until(lambda: p2._probe(1) is tieredcache._decorators._MISSING)
    p2(1)
    assert runs.n == 2


def test_invalidate_helper_reaches_every_process(redis_caches):
    one, two = redis_caches(), redis_caches()

    def define(c):
        @c.cached(ttl=60)
        def balance(phone):
            return 100
        return balance

    b1, b2 = define(one), define(two)
    b1("555"), b2("555")
    assert b2._probe("555") == 100
    b1.invalidate("555")
    assert wait_until(lambda: b2._probe("555") is tieredcache._decorators._MISSING)


# ---- not storing a result ------------------------------------------------------------------


def test_a_function_returning_nostore_answers_without_caching(cache):
    runs = Calls()

    @cache.cached()
    def search(q):
        runs(q)
        return tieredcache.NoStore([]) if q == "none" else [q]

    assert search("none") == [] and search("none") == []
    assert runs.n == 2
    assert search("x") == ["x"] and search("x") == ["x"]
    assert runs.n == 3
    s = search.stats()
    assert s["errors"] == 0 and s["misses"] == 3
    assert cache.get_or_set("k", lambda: tieredcache.NoStore(5)) == 5
    assert cache.get("k") is None


def test_nostore_with_redis_stores_nothing_there_either(redis_caches, rawr):
    c = redis_caches(lock_timeout=1.0)
    assert c.get_or_set("k", lambda: tieredcache.NoStore("page")) == "page"
    assert not rawr.exists(c.redis_key("k"))
    assert c.get_or_set("k", lambda: "v") == "v"
    assert rawr.exists(c.redis_key("k"))


def test_keys_of_one_length_built_in_a_row_stay_distinct(cache):
    """The C path rewrites its last key in place when nobody else holds it: every key
    anyone kept (L1, a miss handler, a traceback) must keep its text."""
    kept = []

    @cache.cached()
    def f(x):
        return x

    for x in range(10, 100):
        assert f(x) == x
        kept.append(f._key(x))
    assert kept == [cache._ns.l1prefix + f.cache_key(x) for x in range(10, 100)]
    assert sorted(k for k in cache._core.l1.keys()) == sorted(kept)
    assert [f(x) for x in range(10, 100)] == list(range(10, 100))
    assert f.stats()["hits"] == 90
