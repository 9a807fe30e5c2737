"""Each job's name is declared once: pytest-xdist may import any two test modules, so any two of actors/ and
tests/support/, into one process, and Dramatiq refuses a second actor of a name ("already registered").

Read from the source with `ast`, like test_layers.py, so the clash shows here rather than as an error of whichever
test happened to share a worker with the other module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Modules a test process may import side by side. tests/benchmarks/plain_app.py is left out: it is the baseline's
#: own app with its own broker, run in a process of its own.
SHARED = [*sorted((ROOT / "actors").rglob("*.py")), *sorted((ROOT / "tests" / "support").glob("*.py"))]


def declared_names(path: Path) -> list[str]:
    """The actor names a module declares with @job(...) or @dramatiq.actor(...) on a function at its top level."""
    names = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            called = ast.unparse(call.func if call else decorator)
            if called.split(".")[-1] not in {"job", "actor"}:
                continue
            given = [k.value for k in (call.keywords if call else []) if k.arg == "actor_name"]
            names.append(given[0].value if given and isinstance(given[0], ast.Constant) else node.name)
    return names


def test_the_source_declares_actors_so_the_check_reads_something() -> None:
    found = {name for path in SHARED for name in declared_names(path)}
    assert {"held", "gated", "per_account"} <= found


def test_no_two_modules_that_may_share_a_process_declare_an_actor_of_the_same_name() -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for path in SHARED:
        for name in declared_names(path):
            where[name].add(str(path.relative_to(ROOT)))
    assert {name: sorted(paths) for name, paths in where.items() if len(paths) > 1} == {}
