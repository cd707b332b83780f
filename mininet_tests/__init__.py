"""Integration tests in Mininet with Open vSwitch (run as root; see conftest.py)."""
