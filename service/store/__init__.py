"""The Redis side: the job store, schedule store, pause flags, locks, key names, the script batcher, and the Lua
scripts (`lua/`) that change a job's state atomically.

May import `service.domain` and the foundation (`settings`, `logs`, `tracing`); nothing above it.
"""
