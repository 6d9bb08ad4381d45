"""Restaurant billing (seed files 000-002) rebuilt on tieredcache: see README.md."""
