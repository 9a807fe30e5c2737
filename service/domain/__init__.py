"""The words of the service: job states, records, errors, the running job's context, clock, message envelope, cron,
rate limits and report names.

Owns plain values and rules. May import nothing of `service` but its own modules, so every layer may import it.
"""
