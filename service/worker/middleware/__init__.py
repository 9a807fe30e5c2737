"""Dramatiq middleware of the service: each module is one feature."""
