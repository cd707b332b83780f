"""Mininet topologies for Dyncast, each described as a networkx graph first (see STYLE.md, 9)."""
