"""Instances: the catalogue of services and instances, and each instance's life cycle.

Boundary: the catalogue (services by name and D-SID, instances by D-BID), the life-cycle
transition table and the recorded transitions, D-MA commands, liveness (stale metrics, probes,
detachment) and the scaling policy (reactivation, scale-in). It says which instances are usable;
it does not choose among them (`selection`) or program switches (`dataplane`).
"""
