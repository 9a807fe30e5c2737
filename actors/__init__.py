"""The jobs. Each module is one job family; every module here is imported, so adding a job is adding a file."""

from __future__ import annotations

import importlib
import pkgutil

import service.bootstrap  # noqa: F401  (sets the global broker before any actor is declared)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
