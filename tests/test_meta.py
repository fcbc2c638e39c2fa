"""Meta tests: the sans-I/O cores stay free of I/O, and the public API is what the docs say."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import trio_mailoauth

PACKAGE = Path(trio_mailoauth.__file__).parent

# Modules that must do no I/O: the protocol cores, SASL, the errors, the token value type.
CORE_MODULES = sorted(
    [
        *(
            f"trio_mailoauth.{proto}.{path.stem}"
            for proto in ("imap", "smtp", "pop3")
            for path in (PACKAGE / proto).glob("_*.py")
            if path.stem != "__init__"
        ),
        "trio_mailoauth.sasl",
        "trio_mailoauth._sansio",
        "trio_mailoauth.errors",
        "trio_mailoauth.oauth.tokens",
        "trio_mailoauth.oauth.grants",
        "trio_mailoauth.oauth.jwt",
    ]
)
FORBIDDEN = {
    "trio",
    "anyio",
    "httpx",
    "httpcore",
    "socket",
    "ssl",
    "asyncio",
    "selectors",
    "select",
}


def _module_path(name: str) -> Path:
    relative = Path(*name.split(".")[1:])
    file = PACKAGE / relative.with_suffix(".py")
    return file if file.exists() else PACKAGE / relative / "__init__.py"


def _imports(name: str) -> set[str]:
    tree = ast.parse(_module_path(name).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.rsplit(".", node.level)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from pkg import module` imports a module too.
            found.update(
                f"{module}.{alias.name}"
                for alias in node.names
                if module.startswith("trio_mailoauth")
                and (PACKAGE.parent / f"{module}.{alias.name}".replace(".", "/"))
                .with_suffix(".py")
                .exists()
            )
    return found


def _closure(name: str) -> dict[str, str]:
    """Every module ``name`` imports, transitively within the package: module -> importer."""
    seen: dict[str, str] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        for imported in _imports(current):
            if imported in seen:
                continue
            seen[imported] = current
            if imported.startswith("trio_mailoauth.") or imported == "trio_mailoauth":
                if imported == "trio_mailoauth":
                    continue  # the package __init__ is checked by the public-API test
                todo.append(imported)
    return seen


def test_there_are_cores_to_check() -> None:
    assert "trio_mailoauth.imap._connection" in CORE_MODULES
    assert "trio_mailoauth.smtp._connection" in CORE_MODULES
    assert "trio_mailoauth.pop3._connection" in CORE_MODULES


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_no_io(module: str) -> None:
    for imported, importer in _closure(module).items():
        top = imported.split(".")[0]
        assert top not in FORBIDDEN, f"{module} imports {imported} (via {importer})"
        assert imported not in {
            "trio_mailoauth",
            "trio_mailoauth._client",
            "trio_mailoauth.transport",
        }, f"{module} imports {imported} (via {importer})"


def _documented_names() -> set[str]:
    """The names in the table under "## The public API" of docs/index.md."""
    text = (PACKAGE.parent / "docs" / "index.md").read_text()
    section = text.split("## The public API", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return {name for row in rows for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", row)}


def test_public_api_matches_the_documentation() -> None:
    assert set(trio_mailoauth.__all__) == _documented_names()
    assert len(trio_mailoauth.__all__) == len(set(trio_mailoauth.__all__))
    for name in trio_mailoauth.__all__:
        assert getattr(trio_mailoauth, name) is not None, name


def test_public_api_contains_what_api_md_promises_for_this_milestone() -> None:
    promised = {"open_imap", "open_smtp", "open_pop3", "XOAuth2", "OAuthBearer", "Plain"}
    promised |= {"AuthenticationError", "IMAPResponseError"}
    assert promised <= set(trio_mailoauth.__all__)
    assert trio_mailoauth.AuthenticationError is trio_mailoauth.errors.AuthenticationError
