"""A background-job service: Dramatiq on RabbitMQ with a Redis job store."""
