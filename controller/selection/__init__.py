"""Selection: which instance a new flow from an ingress should go to, and with what share.

Boundary: the decision formula (network cost + compute cost, `engine`), how a metric report
becomes a compute cost (`scoring`, the default estimate), flows placed since the last report
(`placements`), and the per-service recomputation over ingresses (`decisions`). It reads the
network's costs; it never changes instance states or emits flow entries.
"""
