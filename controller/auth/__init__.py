"""Who may call the REST API, and for what: agent signatures, operator tokens, authorisation.

Boundary: pure. Headers, body bytes, the parsed agent and token tables and `now` come in;
an identity or an `AuthError` (401, 403, 415 or 429, naming the problem) comes out. The only
state is each agent's last sequence number (`Verifier`), kept in memory. The shell
(`apps/security.py`) reads the files, serves the gate and calls this package.
"""
