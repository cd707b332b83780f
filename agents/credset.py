"""A whole credential set in one folder, for the demo, the Mininet tests and the benchmarks:
an agent table, a token table, an admin token, agent keys made on demand, and the
`[security]` lines that point a controller configuration at them.

Boundary: files (through `agents.keys`) and the signer; no network. Made once per folder and
reused (a restarted controller in the same folder keeps its credentials).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents import keys
from agents.signing import Signer, read_token
from controller.auth.policy import classify

ANY = ("0.0.0.0/0",)


class CredentialSet:
    """The credentials in `folder`: `admin.token`, `agents.toml`, `tokens.toml`, `NAME.key`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.agents = self.folder / "agents.toml"
        self.tokens = self.folder / "tokens.toml"
        self.token_file = self.folder / "admin.token"
        if not self.token_file.exists():
            keys.add_token(self.tokens, self.token_file, "admin", "admin", force=True)
        if not self.agents.exists():  # none yet: agents are added as the tests start them
            with contextlib.suppress(FileExistsError):  # made meanwhile elsewhere: kept
                keys.write_private(self.agents, "# written by agents/credset.py\n")
        self.read_token_file = self.folder / "read.token"
        if not self.read_token_file.exists():
            keys.add_token(self.tokens, self.read_token_file, "reader", "read", force=True)
        self.admin_token = read_token(self.token_file)
        self._signers: dict[str, Signer] = {}

    def security_section(self) -> str:
        """The `[security]` table that points a controller at these tables."""
        return (f"\n[security]\nagents_file = {json.dumps(str(self.agents))}\n"
                f"tokens_file = {json.dumps(str(self.tokens))}\n")

    def config_with_security(self, config: Path | None, out: Path) -> Path:
        """Write `config` (or an empty one) plus the [security] table to `out`; a config that
        has its own [security] table is copied as it is."""
        text = config.read_text() if config is not None else ""
        if not re.search(r"^\s*\[security\]", text, re.MULTILINE):
            text += self.security_section()
        out.write_text(text)
        return out

    def key_file(self, agent: str, prefixes: Sequence[str] = ANY,
                 max_instances: int | None = None) -> Path:
        """The key file of `agent`, made (and entered in the table) the first time."""
        path = self.folder / f"{agent}.key"
        if not path.exists():
            keys.add_agent(self.agents, path, agent, prefixes, max_instances, force=True)
        return path

    def signer(self, agent: str) -> Signer:
        """A signer for `agent` (one per agent, so its sequence keeps rising)."""
        if agent not in self._signers:
            self._signers[agent] = Signer.from_file(self.key_file(agent))
        return self._signers[agent]

    def headers(self, method: str, path: str, body: bytes, agent: str = "lab") -> dict[str, str]:
        """The credentials a request needs: an agent's signature for the agent endpoints
        (`agent`, made with every prefix if new), else the admin token."""
        if classify(method, path) == "agent":
            return self.signer(agent).headers(method, path, body)
        return {"Authorization": f"Bearer {self.admin_token}"}

    def agent_for(self, method: str, path: str, body: Any, owners: dict[str, str]) -> str:
        """Which agent a test's own agent call speaks as: a registration's `dma`, else the
        agent that registered the instance (`owners`, kept by the caller), else 'lab'."""
        if isinstance(body, dict):
            if classify(method, path) == "agent" and path.rstrip("/").endswith("instances"):
                agent = body.get("dma")
                if isinstance(agent, str):
                    return agent
            dbid = body.get("dbid")
            reports = body.get("reports")
            if dbid is None and isinstance(reports, list) and reports:
                dbid = reports[0].get("dbid") if isinstance(reports[0], dict) else None
            if isinstance(dbid, str) and dbid in owners:
                return owners[dbid]
        tail = path.rstrip("/").rsplit("/", 1)[-1]
        return owners.get(tail, "lab")
