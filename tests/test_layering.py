"""The dependency direction of docs/architecture: pure packages import no I/O layers, and the
control plane and data plane meet only in the store."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mtlsgate"

# package -> packages it must never import
FORBIDDEN = {
    "pki": ("mtlsgate.store", "mtlsgate.api", "mtlsgate.services", "mtlsgate.cli", "mtlsgate.edge"),
    "rules": (
        "mtlsgate.store",
        "mtlsgate.api",
        "mtlsgate.services",
        "mtlsgate.cli",
        "mtlsgate.edge",
    ),
    "store": ("mtlsgate.api", "mtlsgate.services", "mtlsgate.cli", "mtlsgate.edge"),
    "services": ("mtlsgate.api", "mtlsgate.cli", "mtlsgate.edge.runtime"),
    "api": ("mtlsgate.cli", "mtlsgate.edge.runtime"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_dependency_direction() -> None:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        for path in (SRC / package).rglob("*.py") if (SRC / package).exists() else []:
            for name in _imports(path):
                if name.startswith(forbidden):
                    problems.append(f"{path.relative_to(SRC)} imports {name}")
    assert problems == []
