"""The operator tier: the real kopf operator, in-process, against the KMock Kubernetes emulator (emulator.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import kmock
import pytest
import pytest_asyncio

from tests.operator.emulator import ApiServer, Cluster, declare_resources


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A dataset root with the four tables (their content is the jobs' business, not the operator's)."""
    root = tmp_path / "world"
    root.mkdir()
    for table in ("users", "products", "images", "impressions"):
        (root / f"{table}.parquet").write_bytes(table.encode())
    return root


@pytest_asyncio.fixture
async def cluster(tmp_path: Path):
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    async with ApiServer() as server, kmock.Server(server) as http:
        declare_resources(server)
        world = Cluster(server, str(http.url).rstrip("/"), tmp_path / "artifacts")
        try:
            yield world
        finally:
            await world.stop_operators()
