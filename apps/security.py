"""The shell's side of `controller.auth`: the agent and token tables read from their files,
and ONE gate in front of every HTTP route the app serves.

Boundary: file reads, the clock and WSGI. `Gate` wraps the framework's whole WSGI application
(Ryu's server and ours for os-ken are both handed the gate, see `apps.framework` and
`apps.osken_wsgi`), so routes added later are covered without changes. The app installs its
`Guard` on the WSGI context at start (`install`); until then every request gets a 503.
The tables are re-read when their files change (checked every `RELOAD_CHECK_S`, and at once
when a request names an unknown agent or token): adding an agent needs no restart. Each
agent's last accepted sequence is handed to `persist` (the app queues it as a store write,
flushed off the request path) and the stored ones are loaded at start, so replays are
refused across restarts.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from apps import fastpath, routeerrors
from apps.logs import RejectLog
from apps.restconns import TARGET_KEY
from controller.auth.credentials import Agent, Token, agents_from_dict, tokens_from_dict
from controller.auth.errors import AuthError, UnknownCredential
from controller.auth.policy import Request, admit
from controller.auth.settings import SecuritySettings
from controller.auth.verifier import Signed, Verifier
from controller.config import ControllerConfig
from controller.errors import ConfigError, ValidationError
from controller.logcfg import LogConfig
from controller.model import Instance
from controller.writes import Writes

LOG = logging.getLogger("dyncast.security")
GUARD_ATTR = "dyncast_guard"
RELOAD_CHECK_S = 2.0
MAX_TABLE_BYTES = 4 << 20
StartResponse = Callable[..., Any]
# (agent id, its last accepted sequence, the key_id of the key it was accepted under)
Persist = Callable[[str, int, str | None], None]


def read_table(path: str) -> Any:
    """A TOML table file, parsed; ConfigError naming the file if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TABLE_BYTES + 1)
        if len(data) > MAX_TABLE_BYTES:
            raise ConfigError(path, "(file)", f"larger than {MAX_TABLE_BYTES} bytes")
        return tomllib.loads(data.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "(syntax)", str(exc)) from None


def _mtime(path: str) -> float:
    """A file's modification time (0 when it cannot be read)."""
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return 0.0


class Guard:
    """The security settings, the tables from their files, and the verifier's memory."""

    def __init__(self, settings: SecuritySettings, base: Path,
                 instances: Callable[[], Mapping[str, Instance]], max_body_bytes: int,
                 persist: Persist | None = None) -> None:
        self.settings = settings
        self.persist = persist
        self.instances = instances
        self.max_body_bytes = max_body_bytes
        self.paths = {key: str(base / name) if name else "" for key, name in
                      (("agents", settings.agents_file), ("tokens", settings.tokens_file))}
        self.stamps = {key: -1.0 for key in self.paths}
        # a file version that did not parse: its stamp, when it was read, its error (it is
        # read again only when it changes or RELOAD_CHECK_S later, and logged once)
        self.failed: dict[str, tuple[float, str]] = {}
        self.failed_at: dict[str, float] = {}
        # the refusals' log lines, within the rejected-input budget (the app's own, once
        # installed: one budget for every refusal)
        self.rejects = RejectLog(LogConfig().rejected_per_minute)
        self.checked = 0.0
        self.verifier = Verifier({}, (), settings.max_skew_s)
        self.reload(strict=True)

    def reload(self, strict: bool = False) -> None:
        """Re-read a table whose file changed; `strict` (at start): a bad file is an error,
        else it is logged (once a version) and the tables in use stay. A version that did not
        parse is read again only after RELOAD_CHECK_S: requests naming unknown tokens, which
        anyone can send, each re-read and re-logged it."""
        now = time.time()
        for key, path in self.paths.items():
            stamp = _mtime(path) if path else 0.0
            if not path or stamp == self.stamps[key]:
                continue
            if (self.failed.get(key, (None,))[0] == stamp
                    and now - self.failed_at[key] < RELOAD_CHECK_S):
                continue  # this version did not parse a moment ago: no re-read per caller
            try:
                data = read_table(path)
                if key == "agents":
                    agents: dict[str, Agent] = agents_from_dict(
                        data, self.settings.max_instances_per_agent)
                    self.verifier.agents = agents
                else:
                    tokens: tuple[Token, ...] = tokens_from_dict(data)
                    self.verifier.tokens = tokens
            except ValidationError as exc:
                error = exc if isinstance(exc, ConfigError) else ConfigError(path, exc.field,
                                                                            exc.message)
                if strict:
                    raise error from None
                if self.failed.get(key) != (stamp, str(error)):
                    LOG.error("dyncast: security: %s (the previous table stays in use)", error)
                self.failed[key], self.failed_at[key] = (stamp, str(error)), now
                continue
            self.failed.pop(key, None)
            self.stamps[key] = stamp
            _warn_if_readable(path)
            LOG.info("dyncast: security: %s loaded from %s (%d entries)", key, path,
                     len(self.verifier.agents if key == "agents" else self.verifier.tokens))

    def admit(self, req: Request) -> tuple[str, Signed | None]:
        """Who is calling, and the agent's signature it was accepted under (None for a token
        or an open call), or AuthError; the tables are re-read first when due, and once more
        when the caller is unknown (a key or token added since)."""
        now = time.time()
        if now - self.checked >= RELOAD_CHECK_S:
            self.checked = now
            self.reload()
        signed = None
        try:
            try:
                who = admit(req, self.settings, self.verifier, self.instances(), now)
            except UnknownCredential:
                self.reload()
                who = admit(req, self.settings, self.verifier, self.instances(), now)
        finally:  # a signed call refused later (403, 429) used up its sequence all the same
            for agent, seq in self.verifier.take_risen().items():
                signed = Signed(agent, seq, self.verifier.seq_keys.get(agent))
                if self.persist is not None:
                    self.persist(agent, seq, signed.key)
        return who, signed

    def startup_warnings(self) -> list[str]:
        """What an operator must hear at every start."""
        if not self.settings.auth:
            return ["[security] auth = false: ANYONE who reaches the REST port can create, "
                    "change and delete services and instances, and post metrics"]
        out = []
        if not self.paths["tokens"]:
            out.append("[security] tokens_file is not set: every operator request is refused")
        if not self.paths["agents"]:
            out.append("[security] agents_file is not set: every D-MA request is refused")
        return out


def _warn_if_readable(path: str) -> None:
    """Log a warning if a credentials file can be read by others than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & 0o077:
        LOG.warning("dyncast: security: %s is readable by others (mode %o); chmod 600 it",
                    path, mode & 0o777)


def store_writes(writes: Writes) -> Persist:
    """`persist` for `install`: an agent's sequence queued as its store record (the app
    flushes the queue off the request path, every `store_flush_s` and at stop)."""
    return lambda agent, seq, key: writes.put("agent_seq", agent,
                                              {"agent": agent, "seq": seq, "key": key})


def install(wsgi_context: Any, config: ControllerConfig,
            instances: Callable[[], Mapping[str, Instance]],
            seqs: Mapping[str, int] | None = None, persist: Persist | None = None,
            rejects: RejectLog | None = None, keys: Mapping[str, str] | None = None) -> Guard:
    """Load the guard for `config` (its files named relative to env DYNCAST_CONFIG's
    directory), with the agents' stored sequences `seqs` and `persist` for new ones, and put
    it in front of the context's routes (the gate finds it there); its refusals are logged
    through `rejects` (the app's budget), else through one of its own."""
    guard = load_guard(config.security, os.environ.get("DYNCAST_CONFIG") or None, instances,
                       config.limits.max_body_bytes, persist)
    guard.rejects = rejects or RejectLog(config.logging.rejected_per_minute)
    guard.verifier.restore(seqs or {}, keys)
    guard.verifier.not_before = time.time() - 0.001  # stamps carry milliseconds
    setattr(wsgi_context, GUARD_ATTR, guard)
    for text in guard.startup_warnings():
        LOG.warning("dyncast: SECURITY WARNING: %s", text)
    return guard


class Gate:
    """WSGI middleware: every request passes the guard (or gets its 401/403/413/415/429/503
    as JSON) before the wrapped application sees it; an admitted API request goes straight to
    the app's `api_call` once the app has attached itself (apps/fastpath.py), any other to the
    framework's routes, whose 404/405 are JSON too (apps/routeerrors.py)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        guard: Guard | None = getattr(self.inner, GUARD_ATTR, None)
        if guard is None:
            return _reply(start_response, 503, {"error": "the controller is starting",
                                                "field": "path"})
        body = _read_body(environ, guard.max_body_bytes)
        if body is None:
            return _reply(start_response, 413, {"error": f"body: larger than "
                                                f"{guard.max_body_bytes} bytes",
                                                "field": "body"})
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        req = Request(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""), body,
                      environ.get("CONTENT_TYPE", ""),
                      lambda name: str(environ.get("HTTP_" + name.upper().replace("-", "_"),
                                                   "")), _target(environ))
        try:
            who, signed = guard.admit(req)
        except AuthError as exc:  # logged within the budget: anyone can send these
            guard.rejects.reject(req.method, req.path, exc.status, exc.field, str(exc),
                                 str(environ.get("REMOTE_ADDR", "")))
            return _reply(start_response, exc.status, exc.body())
        environ["dyncast.caller"] = who
        environ[fastpath.SIGNED_KEY] = signed  # (a cluster's other members learn its sequence)
        app = getattr(self.inner, fastpath.APP_ATTR, None)
        if app is not None and fastpath.routed(environ):  # the API without webob and Routes
            return fastpath.serve(app, environ, body, start_response)
        return routeerrors.serve(self.inner, environ, start_response)  # JSON 404/405


def _target(environ: dict[str, Any]) -> str:
    """The request target as received (our server puts it in the environ, apps/restconns.py);
    from another WSGI server, its raw path (or PATH_INFO) and query."""
    target = environ.get(TARGET_KEY)
    if isinstance(target, str) and target:
        return target
    path = str(environ.get("RAW_PATH_INFO") or environ.get("PATH_INFO") or "")
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def _read_body(environ: dict[str, Any], most: int) -> bytes | None:
    """The request body, at most `most` bytes (None: larger)."""
    stream = environ.get("wsgi.input")
    text = environ.get("CONTENT_LENGTH") or ""
    if stream is None:
        return b""
    if text:
        try:
            length = int(text)
        except ValueError:
            return None
        if length > most or length < 0:
            return None
        return bytes(stream.read(length)) if length else b""
    if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        data = bytes(stream.read(most + 1))
        return None if len(data) > most else data
    return b""


def _reply(start_response: StartResponse, status: int, body: dict[str, str]) -> list[bytes]:
    """A JSON error reply."""
    reasons = {401: "Unauthorized", 403: "Forbidden", 413: "Payload Too Large",
               415: "Unsupported Media Type", 429: "Too Many Requests",
               503: "Service Unavailable"}
    data = json.dumps(body, sort_keys=True).encode() + b"\n"
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="dyncast"'))
    start_response(f"{status} {reasons.get(status, 'Error')}", headers)
    return [data]


def load_guard(settings: SecuritySettings, config_path: str | None,
               instances: Callable[[], Mapping[str, Instance]], max_body_bytes: int,
               persist: Persist | None = None) -> Guard:
    """The guard for a configuration; file names are relative to the configuration file."""
    base = Path(config_path).resolve().parent if config_path else Path.cwd()
    return Guard(settings, base, instances, max_body_bytes, persist)
