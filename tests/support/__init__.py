"""Test helpers: isolated RabbitMQ vhost and Redis DB, worker processes, test-only actors."""
