"""Framework integrations: ``tieredcache.contrib.fastapi`` and ``tieredcache.contrib.flask``.

Each module imports its framework, so import only the one you use.
"""
