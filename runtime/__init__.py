"""Turns a validated graph into actors and runs problems through it.

Importing any runtime module runs this first, so the zero-copy flag is set before the
driver's first `import ray` (Ray reads it once, at import).
"""
from channels.zero_copy_env import set_zero_copy_env

set_zero_copy_env()
