"""The layers stay layers: a module of `service/` or `actors/` imports only the layers below its own.

Read from the source with `ast`, so a new module is checked the day it is written. Imports made only for type
annotations (`if TYPE_CHECKING:`) count too: they say which way the code leans.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Settings, logging, tracing and background loops: read by every layer, and they import only each other and the domain.
FOUNDATION = {"settings", "logs", "tracing", "tracing_file", "background"}

#: What each layer may import of `service` besides itself. `bootstrap` is the composition root: it builds the broker,
#: the store and the service objects once, so the faces and the jobs receive them from it.
MAY_IMPORT: dict[str, set[str]] = {
    "domain": set(),
    "foundation": {"domain"},
    "store": {"domain", "foundation"},
    "rabbit": {"domain", "foundation"},
    "kits": {"store", "domain", "foundation"},
    "ops": {"store", "rabbit", "domain", "foundation"},
    "worker": {"ops", "store", "rabbit", "kits", "domain", "foundation"},
    "bootstrap": {"worker", "ops", "store", "rabbit", "kits", "domain", "foundation"},
    "web": {"bootstrap", "ops", "domain", "foundation"},
    "cli": {"bootstrap", "ops", "domain", "foundation"},
    "entry": {"bootstrap", "worker", "ops", "store", "rabbit", "kits", "domain", "foundation", "jobs"},
    "jobs": {"bootstrap", "worker", "kits", "domain", "foundation"},
}


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to: `service.ops.jobs` -> `ops`, `actors.email` -> `jobs`."""
    parts = module.split(".")
    if parts[0] == "actors":
        return "jobs"
    assert parts[0] == "service", module
    if len(parts) == 1:
        return "foundation"
    head = parts[1]
    if head in FOUNDATION:
        return "foundation"
    if head == "actors":
        return "entry"
    return head


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every `service.*` or `actors.*` module the file imports, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from service import logs` imports the module service.logs
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names if node.module == "service"]
    return [(line, name) for line, name in found if name.split(".")[0] in {"service", "actors"}]


#: Upward imports left from the flat layout, each to be removed by moving the code to its layer. Shrinks to empty.
NOT_YET_MOVED = {
    "service/cli/errors.py:16 (cli) imports service.worker.typed_actor (worker)",
    "service/cli/main.py:53 (cli) imports service.actors (entry)",
    "service/cli/main.py:55 (cli) imports service.rabbit.dead_letters (rabbit)",
    "service/cli/main.py:56 (cli) imports service.store.pauses (store)",
    "service/cli/main.py:413 (cli) imports service.actors (entry)",
    "service/ops/jobs.py:40 (ops) imports service.worker.typed_actor (worker)",
    "service/ops/schedules.py:13 (ops) imports service.worker (worker)",
    "service/web/__init__.py:9 (web) imports service.store.redis_config (store)",
    "service/web/dashboard/chart.py:8 (web) imports service.store.job_store (store)",
    "service/web/deps.py:15 (web) imports actors (jobs)",
    "service/web/deps.py:25 (web) imports service.rabbit.dead_letters (rabbit)",
    "service/web/deps.py:26 (web) imports service.store.hook_ids (store)",
    "service/web/deps.py:27 (web) imports service.store.pauses (store)",
}

SOURCES = sorted([*ROOT.joinpath("service").rglob("*.py"), *ROOT.joinpath("actors").rglob("*.py")])


def upward_imports(path: Path) -> list[str]:
    own = layer_of(module_name(path))
    wrong = []
    for line, name in imported_modules(path):
        if name == "service":
            continue
        target = layer_of(name)
        if target != own and target not in MAY_IMPORT[own]:
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {name} ({target})")
    return [w for w in wrong if w not in NOT_YET_MOVED]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_the_layers_below_its_own(path: Path) -> None:
    assert upward_imports(path) == []


def test_every_package_of_service_is_a_known_layer() -> None:
    packages = {p.parent.name for p in ROOT.joinpath("service").glob("*/__init__.py")}
    assert packages <= set(MAY_IMPORT), packages - set(MAY_IMPORT)


def test_each_layer_says_in_its_docstring_what_it_may_import() -> None:
    for init in ROOT.joinpath("service").glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in docstring, f"{init.relative_to(ROOT)} does not say what it may import"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself works: a store module that imports the service layer is reported."""
    fake = ROOT / "service" / "store" / "_upward_probe.py"
    fake.write_text("from service.ops.jobs import Jobs\n")
    try:
        assert upward_imports(fake) == ["service/store/_upward_probe.py:1 (store) imports service.ops.jobs (ops)"]
    finally:
        fake.unlink()
