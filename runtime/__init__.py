"""Turns a validated graph into actors and runs problems through it.

Importing any runtime module runs this first, so the zero-copy flag is set before the
driver's first `import ray` (Ray reads it once, at import).
"""
import os

from latentray.channels.zero_copy_env import set_zero_copy_env

set_zero_copy_env()
# The scheduler reads the outcome of every unit it submits (runtime/scheduler.py); when a
# step fails, the steps after it fail with the same error, and Ray would print each of
# those echoes again as "unhandled" when their references are dropped.
os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
