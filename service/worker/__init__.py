"""The worker and scheduler processes: the typed actor (`@job`), progress, periodic schedules, the middleware that
records every attempt (`middleware/`), hook-failure policy and worker metrics.

May import `service.ops`, `service.store`, `service.rabbit`, `service.kits`, `service.domain` and the foundation.
"""
