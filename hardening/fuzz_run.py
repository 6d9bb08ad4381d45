"""Run one fuzz target under atheris: ``fuzz_run.py TARGET [libFuzzer flags...]``.

TARGET is ``localcache``, ``serializers``, ``templates`` or ``redis_reply`` (the module
``hardening/fuzz_TARGET.py``). Imports nothing of tieredcache itself, so that
``fuzz_common.main`` can instrument the package as it is imported. Started by
``hardening/fuzz.sh``, which sets up the ASan environment.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "tests"))  # refmodel

from fuzz_common import main  # noqa: E402

if __name__ == "__main__":
    target = sys.argv.pop(1)
    main("fuzz_" + target)
