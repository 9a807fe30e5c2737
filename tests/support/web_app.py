"""The web app as tests serve it: the real `service.api:app`, with the test-only actors declared too."""

from service.api import app
from tests.support import test_actors  # noqa: F401  (so the dashboard and API know the test jobs)

__all__ = ["app"]
