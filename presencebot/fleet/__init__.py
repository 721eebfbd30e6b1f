"""Fleet mode: several worker processes share the connection units of one deployment.

:mod:`.leases` decides which worker runs which unit and provides the fencing check that keeps a
worker that lost a unit from posting or alerting for it; :mod:`.member` is one worker's part
(start and stop the runtime's networks as leases come and go, the escalation singleton);
:mod:`.fenced` wraps each adapter so that every join, post and badge passes that check.
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
