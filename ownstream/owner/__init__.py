"""What the owner does, shared by the CLI, the owner API and the console, each step audited.

`ConnectionOperations` (connect, import, run, rename, revoke, schedule, delete, diagnostics),
`ProviderOAuth` (connecting by OAuth at a provider), `AccessOperations` (grants and tokens) and
`WriteOperations` (pushed records, their sync state, record deletes) are the only code that
changes owner state on the owner's behalf; every surface calls them, so a rule lives in one
place.
"""

from ownstream.owner.access import AccessOperations
from ownstream.owner.connections import ConnectionOperations, schedule_view
from ownstream.owner.provider_oauth import ProviderOAuth
from ownstream.owner.writes import WriteOperations

__all__ = [
    "AccessOperations",
    "ConnectionOperations",
    "ProviderOAuth",
    "WriteOperations",
    "schedule_view",
]
