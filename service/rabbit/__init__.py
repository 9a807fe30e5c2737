"""The RabbitMQ side: one link with deadlines for every call (publish, queue figures, purge, dead letters, the event
export's batch channel), the broker's consumer with batched acknowledgements, and the publisher the API, the CLI and
the dead-letter requeue enqueue through.

May import `service.domain` and the foundation (`settings`, `logs`, `tracing`); nothing above it.
"""
