"""Fault-injection tests against the local stack (issue 7)."""
