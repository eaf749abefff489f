"""Sandboxed code execution: every reward in o1-Coder comes from running model-written code here.

Runs in its own process and imports no JAX. `ExecutionService` is the async client; `rewards` turns results into
the paper's outcome and aggregated rewards. See README.md in this folder for the threat model and JSON contract.
"""
from __future__ import annotations

__all__ = ["ExecutionService", "SandboxUnavailable", "STATUSES"]


def __getattr__(name):  # lazy: the service process imports submodules without pulling in the client
    if name in ("ExecutionService", "SandboxUnavailable"):
        from o1jax.execution import service
        return getattr(service, name)
    if name == "STATUSES":
        from o1jax.execution.jobs import STATUSES
        return STATUSES
    raise AttributeError(name)
