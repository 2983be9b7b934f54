"""Dependencies point one way (DESIGN.md, "Layering"), checked on the import graph of ``relay/``.

Every module under ``relay/`` belongs to a component, the first name below ``relay`` (``relay.pool.store``
belongs to ``pool``; ``relay/__init__.py`` is the component ``relay``). Each component has a level, lowest
first. A module may import its own component and components of lower levels only: importing a component
of the same level (``pool`` -> ``etsi014``, ``gateway`` -> ``kms_sim``, ``etsi014`` <-> ``etsi020``) or of a
higher level is a violation, and so is a component the table does not place. Every import counts: at
module level, inside functions, and under ``if TYPE_CHECKING:`` (a type-only import is still a dependency
of the code, and the first step of a cycle).

The levels are the ones of the issue that set the rule, refined where a sound dependency did not fit:

- L0 is split. ``wire`` (the pydantic pieces both ETSI interfaces describe their messages with) checks
  key_IDs with the ``domain`` rules, so it sits one step above the domain types (L0b).
- ``openapi_frame`` (the document frame both ETSI interfaces generate their OpenAPI from) sits with the
  other interface-neutral helpers at L1a.
- L1 is split. ``pki`` builds on ``crypto`` (identity keys, private-file writing) and provisions the
  identities a ``topology`` names, so it sits one step above them (L1b).
- L4 is split. ``loadtest`` starts and attaches to testbeds (``testbed.launcher``) and reads their admin
  listeners the way ``testbed status`` does, so it sits one step above ``testbed`` and ``compose`` (L4b);
  so does ``containers`` (the compose testbed run for real), which renders with ``compose`` and shows the
  ``testbed`` status screen.
- ``console`` (operator tables, rich or plain) knows nothing of the relay and sits at L0a with the other
  leaf helpers; so do ``relay`` itself (the package's ``__init__``) and ``topologies`` (the packaged topology
  files, read as resources), which may therefore import nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import relay

LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("L0a", frozenset({"relay", "domain", "aio", "strict_json", "proto", "console", "topologies"})),
    ("L0b", frozenset({"wire"})),
    ("L1a", frozenset({"crypto", "topology", "observability", "http_server", "openapi_frame"})),
    ("L1b", frozenset({"pki"})),
    ("L2", frozenset({"etsi014", "etsi020", "pool"})),
    ("L3", frozenset({"gateway", "kms_sim"})),
    ("L4a", frozenset({"testbed", "compose"})),
    ("L4b", frozenset({"loadtest", "containers"})),
    ("L5", frozenset({"cli"})),
)


@dataclass(frozen=True)
class Module:
    name: str
    source: str
    is_package: bool = False


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def relay_modules(root: Path) -> list[Module]:
    """Every module of the package whose directory is ``root`` (generated code included)."""
    modules = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules.append(Module(name, path.read_text(encoding="utf-8"), is_package))
    return modules


def imports_in(module: Module, known: frozenset[str]) -> Iterator[Import]:
    """Every import in ``module``, wherever it stands; ``from p import name`` is ``p.name`` when that is a module."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(module.source, module.name)):
        if isinstance(node, ast.Import):
            yield from (Import(module.name, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(module.name, candidate if candidate in known else base, node.lineno)


def _absolute(name: str | None, level: int, package: str) -> str:
    if level == 0:
        return name or ""
    anchor = package.split(".")[: len(package.split(".")) - (level - 1)]
    return ".".join([*anchor, *([name] if name else [])])


def component(module_name: str) -> str | None:
    """The component a ``relay`` module belongs to; ``None`` for modules outside ``relay``."""
    parts = module_name.split(".")
    if parts[0] != "relay":
        return None
    return parts[1] if len(parts) > 1 else "relay"


def violations(modules: Sequence[Module], levels: tuple[tuple[str, frozenset[str]], ...] = LEVELS) -> list[str]:
    """One line per import that breaks the rule, naming importer, imported and the rule broken."""
    known = frozenset(m.name for m in modules)
    level_of: Mapping[str, tuple[int, str]] = {
        name: (rank, label) for rank, (label, names) in enumerate(levels) for name in names
    }
    found = []
    for module in modules:
        own = component(module.name)
        if own not in level_of:
            found.append(f"{module.name}: component {own!r} has no level in the layering table")
            continue
        own_rank, own_label = level_of[own]
        for item in dict.fromkeys(imports_in(module, known)):  # one line per import, not per imported name
            target = component(item.imported)
            if target is None or target == own:
                continue
            where = f"{item.importer} (line {item.line}) imports {item.imported}"
            if target not in level_of:
                found.append(f"{where}: component {target!r} has no level in the layering table")
                continue
            rank, label = level_of[target]
            if rank == own_rank:
                found.append(f"{where}: {own} and {target} are both {own_label}; a component imports lower levels only")
            elif rank > own_rank:
                found.append(f"{where}: {target} ({label}) is above {own} ({own_label}); dependencies point down only")
    return found


def test_relay_dependencies_point_one_way() -> None:
    found = violations(relay_modules(Path(relay.__file__).parent))
    assert not found, "layering violations (see tests/test_layering.py):\n" + "\n".join(found)


def test_every_component_has_one_level() -> None:
    placed = [name for _, names in LEVELS for name in names]
    assert len(placed) == len(set(placed))


# The checker itself, on fabricated module sets.


def test_a_lower_level_and_the_own_component_may_be_imported() -> None:
    modules = [
        Module("relay.pool.store", "from relay.domain import Key\nfrom relay.pool import keys\nimport asyncio\n"),
        Module("relay.pool", "", is_package=True),
        Module("relay.pool.keys", "from . import store\nfrom .store import Key\n"),
        Module("relay.domain", ""),
    ]
    assert violations(modules) == []


def test_a_same_level_import_is_named_with_importer_imported_and_rule() -> None:
    modules = [Module("relay.etsi014.client", "import os\n\nfrom relay.etsi020.models import Error\n")]
    assert violations(modules) == [
        "relay.etsi014.client (line 3) imports relay.etsi020.models: etsi014 and etsi020 are both L2; "
        "a component imports lower levels only"
    ]


def test_an_upward_import_under_type_checking_is_seen() -> None:
    source = (
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from relay.gateway.relay_engine import RelayEngine\n"
    )
    assert violations([Module("relay.observability.gateway", source)]) == [
        "relay.observability.gateway (line 4) imports relay.gateway.relay_engine: gateway (L3) is above "
        "observability (L1a); dependencies point down only"
    ]


def test_an_import_inside_a_function_is_seen() -> None:
    source = "def run() -> None:\n    from relay import cli\n    cli.main([])\n"
    modules = [Module("relay.testbed.launcher", source), Module("relay.cli", "")]
    (found,) = violations(modules)
    assert found.startswith("relay.testbed.launcher (line 2) imports relay.cli: cli (L5) is above testbed (L4a)")


def test_a_relative_import_is_resolved_to_its_component() -> None:
    modules = [
        Module("relay.pool", "from ..gateway import routing\n", is_package=True),
        Module("relay.gateway.routing", ""),
    ]
    (found,) = violations(modules)
    assert found.startswith("relay.pool (line 1) imports relay.gateway.routing: gateway (L3) is above pool (L2)")


def test_a_component_without_a_level_is_reported_as_importer_and_as_imported() -> None:
    modules = [Module("relay.openapi.common", ""), Module("relay.etsi014.server", "from relay.openapi import common\n")]
    assert violations(modules) == [
        "relay.openapi.common: component 'openapi' has no level in the layering table",
        "relay.etsi014.server (line 1) imports relay.openapi.common: component 'openapi' has no level in the "
        "layering table",
    ]
