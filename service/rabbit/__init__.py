"""The RabbitMQ side: one link with deadlines for every call (publish, queue figures, dead letters), the broker's
consumer with batched acknowledgements, and the publisher the API and CLI enqueue through.

May import `service.domain` and the foundation (`settings`, `logs`, `tracing`); nothing above it.
"""
