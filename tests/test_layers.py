"""The layout is the architecture: these rules keep it so.

ubi/common        config, errors, messages, the trip record: imports no other project package
ingest, scoring,  the cores: pure logic; import ubi.common and each other, never a broker or database
pricing           client, never the adapters, stages, ops or CLI above them
ubi/adapters      Kafka, MQTT, DuckDB: the only places that talk to them
ubi/stages, ubi/ops, simulator, ubi/cli   wire cores to adapters
ubi/portal        the policyholder portal and statements (web app, templates, message catalogues)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORES = ["ingest", "scoring", "pricing"]
BROKER_CLIENTS = {"kafka", "confluent_kafka", "paho", "duckdb"}
ABOVE_CORES = ("ubi.adapters", "ubi.stages", "ubi.ops", "ubi.cli", "ubi.portal", "simulator")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("ubi/common"), ids=lambda p: p.name)
def test_common_sits_below_everything(path):
    for name in imports(path):
        top = name.split(".")[0]
        assert top not in {"ingest", "scoring", "pricing", "simulator"} | BROKER_CLIENTS, (path, name)
        assert top != "ubi" or name.startswith("ubi.common"), (path, name)


@pytest.mark.parametrize("path", [p for c in CORES for p in modules(c)], ids=lambda p: str(p.relative_to(ROOT)))
def test_cores_import_no_client_and_nothing_above_them(path):
    for name in imports(path):
        assert name.split(".")[0] not in BROKER_CLIENTS, (path, name)
        assert not name.startswith(ABOVE_CORES), (path, name)
        assert not name.startswith("ubi") or name.startswith("ubi.common"), (path, name)


def test_every_role_has_its_folder():
    for folder in [
        "ubi/common",
        "ubi/adapters",
        "ubi/stages",
        "ubi/ops",
        "ubi/cli",
        "ubi/portal",
        "ingest",
        "scoring",
        "pricing",
        "simulator",
    ]:
        assert (ROOT / folder / "__init__.py").exists(), folder
    loose = sorted(p.name for p in (ROOT / "ubi").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside a role folder: {loose}"
