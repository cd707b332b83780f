"""The data plane: the flow entries that carry a decision into the switches and keep affinity.

Boundary: one mode object per dataplane (`modes`: reactive, learn, bucket), reactive bindings
and their entries (`affinity`, `reactive`), the learn/bucket/overlay rules (`rules`), bucket
maps (`buckets`), the programmer that keeps them in step with decisions, and the reconciler
(entries: `audit`; fast-failover groups: `groupaudit`).
Everything here is `FlowMod`/`PacketOut` values; sending them is the shell's job.
"""
