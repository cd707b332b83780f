"""Controller configuration: one TOML file, parsed and validated here and nowhere else."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import ConfigError, ValidationError
from controller.model import Service, check_number, reject_unknown, service_from_dict


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """How the decision engine turns costs into a weighted choice (see README, 'Decisions')."""

    spread: float = 0.3
    sharpness: float = 4.0
    hysteresis: float = 0.15
    hop_ms: float = 1.0


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Everything the controller reads from its TOML file."""

    store_url: str = "sqlite:///dyncast.db"
    stale_after_s: float = 10.0
    lldp_interval_s: float = 1.0
    link_timeout_s: float = 3.5
    store_flush_s: float = 1.0
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    services: tuple[Service, ...] = ()


CONTROLLER_KEYS = {"store_url", "stale_after_s", "lldp_interval_s", "link_timeout_s",
                   "store_flush_s", "selection"}


def _selection(data: Mapping[str, Any]) -> SelectionConfig:
    """Parse the [controller.selection] table."""
    reject_unknown(data, {"spread", "sharpness", "hysteresis", "hop_ms"}, "controller.selection")
    d = SelectionConfig()
    return SelectionConfig(
        spread=check_number(data.get("spread", d.spread), "controller.selection.spread",
                            0.0, 100.0),
        sharpness=check_number(data.get("sharpness", d.sharpness), "controller.selection.sharpness",
                          0.0, 64.0),
        hysteresis=check_number(data.get("hysteresis", d.hysteresis),
                           "controller.selection.hysteresis", 0.0, 10.0),
        hop_ms=check_number(data.get("hop_ms", d.hop_ms), "controller.selection.hop_ms",
                            0.0, 1000.0),
    )


def config_from_dict(data: Mapping[str, Any]) -> ControllerConfig:
    """Validate a parsed TOML document; raises ValidationError naming the key."""
    reject_unknown(data, {"controller", "service"}, "")
    ctl = data.get("controller", {})
    if not isinstance(ctl, Mapping):
        raise ValidationError("controller", "must be a table")
    reject_unknown(ctl, CONTROLLER_KEYS, "controller")
    d = ControllerConfig()
    store_url = ctl.get("store_url", d.store_url)
    if not isinstance(store_url, str) or "://" not in store_url:
        raise ValidationError("controller.store_url", "must be a sqlalchemy URL such as "
                              "'sqlite:///dyncast.db'")
    sel = ctl.get("selection", {})
    if not isinstance(sel, Mapping):
        raise ValidationError("controller.selection", "must be a table")
    raw_services = data.get("service", [])
    if not isinstance(raw_services, list):
        raise ValidationError("service", "must be an array of tables ([[service]])")
    services = tuple(service_from_dict(s, f"service[{i}].") for i, s in enumerate(raw_services))
    check_unique(services)
    return ControllerConfig(
        store_url=store_url,
        stale_after_s=check_number(ctl.get("stale_after_s", d.stale_after_s),
                              "controller.stale_after_s", 0.1, 86400.0),
        lldp_interval_s=check_number(ctl.get("lldp_interval_s", d.lldp_interval_s),
                                "controller.lldp_interval_s", 0.05, 3600.0),
        link_timeout_s=check_number(ctl.get("link_timeout_s", d.link_timeout_s),
                               "controller.link_timeout_s", 0.1, 86400.0),
        store_flush_s=check_number(ctl.get("store_flush_s", d.store_flush_s),
                              "controller.store_flush_s", 0.05, 3600.0),
        selection=_selection(sel),
        services=services,
    )


def check_unique(services: tuple[Service, ...]) -> None:
    """Raise if two services share a name or a D-SID."""
    names: set[str] = set()
    dsids: dict[str, str] = {}
    for i, svc in enumerate(services):
        if svc.name in names:
            raise ValidationError(f"service[{i}].name", f"duplicate service name {svc.name!r}")
        if svc.dsid in dsids:
            raise ValidationError(f"service[{i}].dsid",
                                  f"D-SID {svc.dsid} is already used by {dsids[svc.dsid]!r}")
        names.add(svc.name)
        dsids[svc.dsid] = svc.name


def load_config(path: str | Path | None) -> ControllerConfig:
    """Read and validate the TOML file at `path`; None gives the built-in defaults."""
    if path is None:
        return ControllerConfig()
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", str(exc)) from None
    try:
        return config_from_dict(data)
    except ValidationError as exc:
        raise ConfigError(source, exc.field, exc.message) from None
