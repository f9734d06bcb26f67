"""Operator reports and actions that need no embedded stack: access policy, inspect, recovery report, dead letters."""
