"""The Dyncast core: pure logic, no I/O. Events and `now` in; decisions, intents, writes out.

Layers (each imports only those below it; `tests/test_purity.py` checks it):
- values: `errors`, `validate`, `model` (services, instances, metrics, policies), `intents`
  (flow entries, packets to send, store writes, the named tables and cookies);
- features: `network/`, `selection/`, `instances/`, `dataplane/` (each states its boundary);
- `config`: the validated configuration, composed of the features' settings;
- `core`: the facade the shell calls, one method per event, delegating to the features;
- `api`: the REST API as (method, path, body) in, a reply and intents out.
"""
