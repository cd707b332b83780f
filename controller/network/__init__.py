"""The network: what the switches tell us of links, hosts and load, and how packets get anywhere.

Boundary: topology (switches, links, host attachment points, shortest paths and their cost),
link measurements (rates, utilisation, delay) and the monitor that prices each link, ordinary
forwarding (ARP, host routes, LLDP frames) and packet parsing/building. It knows nothing of
services, instances or decisions; it imports only the values (`controller.intents`, `errors`).
"""
