"""Configuration reload: SIGHUP and POST /dyncast/v1/config/reload re-read the TOML file.

Boundary: the shell. It reads the file (apps/configfile.py), asks the pure `controller.reload`
what changed, checks every service change before applying any (an invalid file, or a change
that cannot be applied, is refused whole and the running config kept), then applies services
through the REST API's own paths (`admit_service`, `Core.put_service`, `Core.delete_service`)
and swaps in the new live settings. Bindings and switch connections are untouched except for
a removed service's (or a service whose D-SID changed: its old address has no flows left).
A SIGHUP only sets an event: the reload itself runs in a green thread of the app's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apps import logs
from apps.configfile import load_config
from apps.metrics import ShellCounts
from controller.admission import admit_service
from controller.core import Core
from controller.errors import Conflict, DyncastError, QuotaExceeded, ValidationError
from controller.intents import Intent
from controller.reload import plan, refusal


@dataclass
class Outcome:
    """A reload's HTTP status, its JSON reply, and the intents applying it produced."""

    status: int
    body: dict[str, Any]
    intents: list[Intent] = field(default_factory=list)


class Reloader:
    """Re-reads the file at `path` into `core` (and calls `swapped` with the config applied)."""

    def __init__(self, core: Core, path: str | None, shell: ShellCounts,
                 swapped: Callable[[Any], None]) -> None:
        self.core = core
        self.path = path
        self.shell = shell
        self.swapped = swapped

    def reload(self, now: float, trigger: str) -> Outcome:
        """Re-read the file and apply what it changes, or refuse it whole (4xx)."""
        if self.path is None:
            return self._refuse(409, "path", "the controller was started without a "
                                "configuration file (DYNCAST_CONFIG)", trigger)
        try:
            new = load_config(self.path, reload=True)
        except ValidationError as exc:
            return self._refuse(400, exc.field, str(exc), trigger)
        core = self.core
        services = core.catalogue.services
        p = plan(core.config, new, services)
        refused = refusal(p, services)
        if refused is not None:
            return self._refuse(409, refused[0], refused[1], trigger)
        most = new.limits.max_services
        total = len(services) - len(p.removed) + len(p.added)
        if total > most:
            return self._refuse(429, "limits.max_services", f"the file would make {total} "
                                f"services (with those made through the API), more than "
                                f"{most}", trigger)
        for svc in (*p.changed, *p.added):
            try:
                admit_service(core, svc, create=False)
            except (ValidationError, Conflict, QuotaExceeded) as exc:  # named as refusal()'s
                fault = (exc.limit if isinstance(exc, QuotaExceeded) else
                         f"service.{svc.name}.{getattr(exc, 'field', '')}".rstrip("."))
                return self._refuse(409, fault, f"service {svc.name}: {exc}", trigger)
        intents: list[Intent] = []
        try:
            for name in p.removed:
                intents += core.delete_service(name)
            for svc in p.changed:
                intents += core.put_service(svc, create=False, now=now)
            for svc in p.added:
                intents += core.put_service(svc, create=True, now=now)
        except DyncastError as exc:  # checked above: reaching this is a bug, said loudly
            self.shell.reloads["failure"] += 1
            logs.event("config", "reload_failed", logging.ERROR, trigger=trigger,
                       reason=f"applying services failed midway: {exc}")
            return Outcome(500, {"error": f"reload failed midway: {exc}"}, intents)
        core.config = p.config
        self.swapped(p.config)
        self.shell.reloads["success"] += 1
        summary = p.summary()
        logs.event("config", "reloaded", logging.WARNING if p.restart_required else logging.INFO,
                   trigger=trigger, reason="configuration file re-read", **summary)
        return Outcome(200, {"reloaded": self.path, "changed": not p.empty, **summary}, intents)

    def _refuse(self, status: int, field_name: str, reason: str, trigger: str) -> Outcome:
        """Count and log a refused reload; the running config stays."""
        self.shell.reloads["failure"] += 1
        logs.event("config", "reload_refused", logging.ERROR, trigger=trigger,
                   field=field_name, reason=reason)
        return Outcome(status, {"error": f"reload refused, running configuration kept: "
                                         f"{reason}", "field": field_name})
