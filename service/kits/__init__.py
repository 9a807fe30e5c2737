"""Libraries the production jobs use: mail and webhooks (each with its settings), reports (their settings are in
`service/settings.py`, the web serving the files too), the job store's upkeep (`maintenance`) and `once`, the
at-most-once side effect for authors of jobs.

May import `service.store`, `service.domain` and the foundation; the jobs in `actors/` call them.
"""
