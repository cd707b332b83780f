"""Authentication: an agent's signature (with clock skew and replay checks) or an operator's
bearer token. Every failure is a 401 naming the header at fault.

Replays: each agent's sequence must rise with every call; the last one accepted is
remembered, so a captured request sent again (within the skew window, or it is stale anyway)
is refused. The memory outlives the process: each sequence that rose is handed to the shell
(`take_risen`), which stores it off the request path, and the stored ones are `restore`d at
start, so a request captured before a restart is refused after it too (docs/security.md).
A sequence accepted in the last moments before an unclean stop may not have been stored, so the
shell also sets `not_before` (its start time): a request signed before the process started is
refused whatever its sequence.

A sequence binds the key it was accepted under (`key_id`, stored with it): when an agent is given
a new key, its sequence starts afresh. Otherwise one request with a huge sequence (a buggy agent,
or a stolen key) would lock that agent name out for good, re-keying or not; a request signed
with the old key is refused by its signature anyway. (A sequence stored by an earlier version,
with no key, binds whatever key.) In a cluster the members tell each other the sequences they
accepted (`witness`), so a request accepted by one is refused when replayed to another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.auth.credentials import Agent, Token, find_token
from controller.auth.errors import AuthError, UnknownCredential
from controller.auth.signing import (
    AGENT_HEADER,
    SEQ_HEADER,
    SEQ_RE,
    SIGNATURE_HEADER,
    SIGNATURE_RE,
    TIMESTAMP_HEADER,
    TIMESTAMP_RE,
    Stamp,
    canonical,
    signature_matches,
)
from controller.validate import NAME_RE

BEARER = "bearer "


def key_id(key: bytes) -> str:
    """A short name for an agent's key (a truncated hash: it says whether the key changed and
    gives nothing of it away)."""
    return hashlib.sha256(b"dyncast agent key\0" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Signed:
    """An agent's call as accepted: its sequence, and the id of the key that signed it (in a
    cluster the other members refuse the same sequence again: `Verifier.witness`)."""

    agent: str
    seq: int
    key: str | None


@dataclass
class Verifier:
    """Checks credentials against the tables; remembers each agent's last sequence."""

    agents: Mapping[str, Agent]
    tokens: tuple[Token, ...]
    max_skew_s: float = 30.0
    last_seq: dict[str, int] = field(default_factory=dict)
    risen: dict[str, int] = field(default_factory=dict)  # not handed to the shell yet
    seq_keys: dict[str, str | None] = field(default_factory=dict)  # the key_id of each one
    not_before: float = 0.0  # signed earlier than this (the process's start): refused

    def restore(self, seqs: Mapping[str, int], keys: Mapping[str, str] | None = None) -> None:
        """The agents' last sequences as stored by an earlier process, with the key_id each
        was accepted under where stored (a lower one never replaces a higher one
        remembered)."""
        for agent, seq in seqs.items():
            if seq > self.last_seq.get(agent, -1):
                self.last_seq[agent] = seq
                self.seq_keys[agent] = (keys or {}).get(agent)

    def witness(self, agent: str, seq: int, key: str | None) -> None:
        """Another cluster member accepted `agent`'s call with sequence `seq` under key id
        `key`: that request (or an earlier one) replayed here is refused too. Not taken when
        it names another key than the agent has here (the members' key files differ); not
        stored (the accepting member stores it)."""
        held = self.agents.get(agent)
        if held is not None and key is not None and key != key_id(held.key):
            return
        last = self.last_seq.get(agent, -1) if self.seq_keys.get(agent) in (key, None) else -1
        if seq > last:
            self.last_seq[agent], self.seq_keys[agent] = seq, key

    def take_risen(self) -> dict[str, int]:
        """The sequences that rose since the last call, to be stored (agent -> sequence)."""
        out, self.risen = self.risen, {}
        return out

    def agent(self, method: str, path: str, body: bytes, header: Callable[[str], str],
              now: float) -> Agent:
        """The agent that signed this request (`header` reads one of its headers, '' if
        absent); AuthError 401 if unsigned, unknown, badly signed, stale or replayed. A good
        one's sequence is kept."""
        texts = {}
        for name, pattern in ((AGENT_HEADER, NAME_RE), (TIMESTAMP_HEADER, TIMESTAMP_RE),
                              (SEQ_HEADER, SEQ_RE), (SIGNATURE_HEADER, SIGNATURE_RE)):
            text = header(name)
            if not text:
                raise AuthError(401, name, "missing: this endpoint needs an agent signature "
                                "(docs/security.md)")
            if not pattern.fullmatch(text):
                raise AuthError(401, name, "malformed")
            texts[name] = text
        agent = self.agents.get(texts[AGENT_HEADER])
        if agent is None:
            raise UnknownCredential(AGENT_HEADER, "unknown agent")
        stamp = Stamp(agent.id, texts[TIMESTAMP_HEADER], texts[SEQ_HEADER])
        if not signature_matches(agent.key, texts[SIGNATURE_HEADER],
                                 canonical(method, path, body, stamp)):
            raise AuthError(401, SIGNATURE_HEADER, "does not match the request and the "
                            "agent's key")
        skew = float(stamp.timestamp) - now
        if abs(skew) > self.max_skew_s:
            raise AuthError(401, TIMESTAMP_HEADER, f"stale: {skew:+.1f} s from the "
                            f"controller's clock (at most {self.max_skew_s:g} s)")
        seq, last, kid = int(stamp.seq), self.last_seq.get(agent.id, -1), key_id(agent.key)
        if self.seq_keys.get(agent.id) not in (kid, None):
            last = -1  # re-keyed: the old key's sequence does not bind the new key
        if seq <= last:
            raise AuthError(401, SEQ_HEADER, f"replayed: sequence {seq} is not above the "
                            f"agent's last ({last})")
        if float(stamp.timestamp) < self.not_before:
            raise AuthError(401, TIMESTAMP_HEADER, "signed before this controller started "
                            "(a replay, or a clock behind the controller's): sign it again")
        self.last_seq[agent.id] = self.risen[agent.id] = seq
        self.seq_keys[agent.id] = kid
        return agent

    def token(self, authorization: str) -> Token:
        """The operator token in an `Authorization: Bearer ...` header; AuthError 401 if
        missing or unknown."""
        if not authorization:
            raise AuthError(401, "Authorization", "missing: send 'Authorization: Bearer "
                            "TOKEN' (docs/security.md)")
        if not authorization[:len(BEARER)].lower() == BEARER or len(authorization) > 512:
            raise AuthError(401, "Authorization", "must be 'Bearer TOKEN'")
        token = find_token(self.tokens, authorization[len(BEARER):].strip())
        if token is None:
            raise UnknownCredential("Authorization", "unknown token")
        return token
