"""Fleet mode: several worker processes share the connection units of one deployment.

Only the leasing core lives here so far (:mod:`presencebot.fleet.leases`): which worker runs which
unit, and the fencing check that keeps a worker that lost a unit from posting or alerting for it.
"""

from __future__ import annotations

from presencebot.fleet.leases import (
    LEASES_SCHEMA,
    SINGLETON,
    Lease,
    LeaseLost,
    LeaseManager,
    default_worker_id,
    ensure_schema,
    status,
)

__all__ = [
    "LEASES_SCHEMA",
    "SINGLETON",
    "Lease",
    "LeaseLost",
    "LeaseManager",
    "default_worker_id",
    "ensure_schema",
    "status",
]
