"""Fixtures shared by the unit tests: a fake datapath per installed framework, demo services."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agents.demo_service import ServiceConfig, ServiceServer
from tests.fakes import FRAMEWORKS, FakeDatapath, Start


@pytest.fixture(params=FRAMEWORKS or [pytest.param("none", marks=pytest.mark.skip(
    reason="neither ryu nor os_ken is installed"))])
def dp(request: pytest.FixtureRequest) -> FakeDatapath:
    """A datapath (id 1) with one installed framework's protocol modules; each in turn."""
    return FakeDatapath(request.param)


@pytest.fixture
def start() -> Iterator[Start]:
    """Start demo services on 127.0.0.1 (free ports) in threads; return their ports."""
    servers: list[ServiceServer] = []

    def starter(capacity: int = 4, service_ms: float = 20.0, name: str = "svc-a") -> int:
        """Start one service and return its port."""
        server = ServiceServer(ServiceConfig(name=name, dbid="127.0.0.1", port=0,
                                             capacity=capacity, service_ms=service_ms))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server.server_port

    yield starter
    for server in servers:
        server.shutdown()
        server.server_close()
