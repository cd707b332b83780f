"""Reading the controller's TOML file: the shell's side of `controller.config` (it does the I/O)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from controller.config import ControllerConfig, config_from_toml
from controller.errors import ConfigError


def load_config(path: str | Path | None, reload: bool = False) -> ControllerConfig:
    """Read and validate the TOML file at `path`; None gives the built-in defaults. For a
    `reload`, a file that holds no setting at all (empty, blank or comments only) is refused:
    that is what a file cut short while it is being written looks like, and applied it would
    remove every service the running file listed, with their instances."""
    if path is None:
        return ControllerConfig()
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"not UTF-8: {exc.reason}") from None
    if reload and _holds_nothing(text):
        raise ConfigError(source, "(file)", "holds no setting (empty, or comments only): "
                          "refused, as a file cut short while being written would be; a file "
                          "meant to list no service keeps a [controller] table")
    return config_from_toml(text, source)


def _holds_nothing(text: str) -> bool:
    """True when `text` is valid TOML with no key or table (invalid TOML: False, refused by
    `config_from_toml` with its own message)."""
    try:
        return tomllib.loads(text) == {}
    except tomllib.TOMLDecodeError:
        return False
