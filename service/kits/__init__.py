"""Libraries the production jobs use — mail, webhooks, reports — each with its own settings.

May import `service.store`, `service.domain` and the foundation; the jobs in `actors/` call them.
"""
