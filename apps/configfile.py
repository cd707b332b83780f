"""Reading the controller's TOML file: the shell's side of `controller.config` (it does the I/O)."""

from __future__ import annotations

from pathlib import Path

from controller.config import ControllerConfig, config_from_toml
from controller.errors import ConfigError


def load_config(path: str | Path | None) -> ControllerConfig:
    """Read and validate the TOML file at `path`; None gives the built-in defaults."""
    if path is None:
        return ControllerConfig()
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"not UTF-8: {exc.reason}") from None
    return config_from_toml(text, source)
