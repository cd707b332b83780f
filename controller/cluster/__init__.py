"""A cluster of controller members: who is alive, who masters which switch, and when to stop.

Boundary: pure. Heartbeat rows read from the shared database (member id, address, last beat,
lease expiry, lease epoch), the database's `now`, a fresh ticket from its sequence and the
shell's own `now` come in; role intents come out (ask a switch for MASTER or SLAVE with a
generation id, read and repair a switch this member now masters, stop programming a switch).
Nothing here reads the clock, talks to the database or sends OpenFlow: `apps/cluster.py` does.
"""
