"""The Redis side: the job store, schedule store, pause flags, locks, key names (keys.py, the one place they are
spelled), what a job's record holds from its message, the script batcher, and the Lua scripts (`lua/`, loaded by
scripts.py) that change a job's state atomically.

May import `service.domain` and the foundation (`settings`, `logs`, `tracing`); nothing above it.
"""
