"""Instructions per decorated L1 hit, with monitoring on or off (run under callgrind).

Seconds on a shared 2-core VM move by 10 % between runs; instruction counts do not. Run
the script twice per setting, with N = 0 and N = 50 rounds of 1,000 hits, and divide the
difference of the totals by 50,000:

    for m in on off; do for n in 0 50; do
      PYTHONHASHSEED=0 PYTHONPATH=src valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/callgrind_hit.py $m $n 2>&1 | grep refs
    done; done
"""

import sys

import tieredcache as tc

mon, n = sys.argv[1] == "on", int(sys.argv[2])
cache = tc.TieredCache(monitoring=mon, alert_rules=[])


@cache.cached(ttl=60)
def f(a):
    return a


keys = list(range(1000, 2000))
for k in keys:
    f(k)


def run():
    for _ in range(n):
        for k in keys:
            f(k)


run()
