"""The public surface is deliberate: pinned names, and type stubs that match the C core."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import tieredcache
from tieredcache import _core, testing

STUB = Path(tieredcache.__file__).with_name("_core.pyi")

LOCALCACHE_METHODS = {
    "get", "set", "delete", "get_many", "set_many", "ttl", "touch", "invalidate_tags",
    "invalidate_prefix", "clear", "expire", "stats", "keys",
}
LOCALCACHE_DUNDERS = {"__len__", "__contains__", "__getitem__", "__setitem__", "__delitem__"}


def public(names):
    return {name for name in names if not name.startswith("_")}


def stub_tree():
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def defined_names(body):
    """Names a stub's module or class body defines (functions, classes, annotated names)."""
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def stub_class(name):
    for node in stub_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"{STUB.name} does not define class {name}")


def test_the_package_exports_exactly_these_names_sorted():
    assert tieredcache.__all__ == [
        "AlertEngine", "AlertRule", "BackendError", "BackendResponseError", "BackendTimeout", "BackendUnavailable", "CacheError",
        "CircuitOpenError", "ConfigurationError", "LocalCache", "NoStore", "PoolTimeout", "SerializationError",
        "SignatureError", "TTL", "TieredCache", "__version__", "cache_analytics_data",
        "cache_appointment_slots", "cache_business_intelligence", "cache_static_reference_data", "cached",
        "configure", "get_cache", "invalidate_appointment_cache", "invalidates", "register_codec",
        "reset_default_cache", "testing", "warm", "warmer",
    ]
    assert tieredcache.__all__ == sorted(tieredcache.__all__)
    for name in tieredcache.__all__:
        assert hasattr(tieredcache, name)


def test_the_testing_module_exports_the_clock_hooks():
    assert testing.__all__ == ["advance_clock", "cache_time", "reset_clock"]
    assert testing.cache_time is _core.monotonic


def test_the_clock_hooks_move_cache_time_forward_and_back():
    start = testing.cache_time()
    assert isinstance(start, float)
    testing.advance_clock(1000)
    advanced = testing.cache_time()
    assert advanced - start >= 1000
    testing.reset_clock()
    assert testing.cache_time() < advanced


def test_localcache_has_the_documented_methods():
    assert LOCALCACHE_METHODS <= public(dir(tieredcache.LocalCache))
    for name in LOCALCACHE_DUNDERS:
        assert getattr(tieredcache.LocalCache, name) is not getattr(object, name, None), name
    assert callable(tieredcache.LocalCache._selfcheck)


def test_localcache_methods_have_text_signatures():
    for name in LOCALCACHE_METHODS:
        signature = inspect.signature(getattr(tieredcache.LocalCache, name))
        assert "self" in signature.parameters, name
    assert list(inspect.signature(tieredcache.LocalCache).parameters) == [
        "max_entries", "max_bytes", "default_ttl"]


def test_py_typed_and_the_core_stub_ship_with_the_package():
    assert STUB.is_file()
    assert STUB.with_name("py.typed").is_file()


def test_the_stub_names_the_same_public_module_members_as_the_c_core():
    assert public(defined_names(stub_tree().body)) == public(vars(_core))


def test_the_stub_names_the_same_public_localcache_members_as_the_c_type():
    body = stub_class("LocalCache").body
    assert public(defined_names(body)) == public(dir(tieredcache.LocalCache))
    assert LOCALCACHE_DUNDERS <= defined_names(body)
    assert {"__new__", "__init__"} & defined_names(body), "the stub types the constructor"


def test_the_stub_parameters_match_the_c_signatures():
    """Parameter names match; an overloaded method's overloads are prefixes of the C signature."""
    stubbed: dict[str, list[list[str]]] = {}
    for node in stub_class("LocalCache").body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        if any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list):
            assert not callable(getattr(tieredcache.LocalCache, node.name)), node.name
            continue
        params = [arg.arg for arg in node.args.posonlyargs + node.args.args]
        params += [f"*{node.args.vararg.arg}"] if node.args.vararg else []
        params += [arg.arg for arg in node.args.kwonlyargs]
        stubbed.setdefault(node.name, []).append(params)
    for name, overloads in stubbed.items():
        actual = [
            f"*{param.name}" if param.kind is param.VAR_POSITIONAL else param.name
            for param in inspect.signature(getattr(tieredcache.LocalCache, name)).parameters.values()
        ]
        assert max(overloads, key=len) == actual, name
        for params in overloads:
            assert actual[: len(params)] == params, name
