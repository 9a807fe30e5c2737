"""The service layer: what the API, the CLI and the dashboard can do — enqueue, look up, cancel and retry jobs; queue
operations (pause, purge, dead letters, delayed jobs); schedules; workers' activity; events; metrics; report files;
and what each of its errors means to a caller (`errors.py`).

May import `service.store`, `service.rabbit`, `service.domain` and the foundation. The faces (`web`, `cli`) reach
Redis and RabbitMQ only through it.
"""
