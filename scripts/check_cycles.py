"""No import cycle between two modules of axis or endpoints (run by scripts/test.sh).

Counts every import, also those inside functions (a cycle hidden at run time is still a cycle), and leaves
out only ``if TYPE_CHECKING:`` imports (annotations, never executed). Prints each cycle found and exits 1.

    python scripts/check_cycles.py
"""

from __future__ import annotations

import sys

import grimp


def cycles(graph: grimp.ImportGraph, packages: tuple[str, ...]) -> list[tuple[str, ...]]:
    modules = sorted(m for m in graph.modules if m.split(".")[0] in packages)
    found: list[tuple[str, ...]] = []
    seen: set[frozenset[str]] = set()
    for module in modules:
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported.split(".")[0] not in packages or imported == module:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back and (key := frozenset(back)) not in seen:
                seen.add(key)
                found.append((module, *back))
    return found


def main() -> int:
    packages = ("axis", "endpoints")
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    found = cycles(graph, packages)
    for cycle in found:
        print("import cycle: " + " -> ".join(cycle))
    print(f"{len(graph.modules)} modules, {len(found)} import cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
