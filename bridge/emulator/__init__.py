"""A faithful local Azure Communication Services Email emulator (HTTPS, HMAC + fake Entra, quotas, faults).

Its names load on first use (PEP 562): the bridge's CLI mounts the emulator's options without paying for
aiohttp and trustme, which only the emulator itself needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .counters import RequestCounters
    from .faults import Fault, Kind, Route, Stage
    from .mailbox import Attachment, OperationError, ReceivedMail
    from .server import API_VERSIONS, Emulator
    from .subscription import Subscription

_HOME = {
    "API_VERSIONS": ".server",
    "Attachment": ".mailbox",
    "Emulator": ".server",
    "Fault": ".faults",
    "Kind": ".faults",
    "OperationError": ".mailbox",
    "ReceivedMail": ".mailbox",
    "RequestCounters": ".counters",
    "Route": ".faults",
    "Stage": ".faults",
    "Subscription": ".subscription",
}
__all__ = [
    "API_VERSIONS",
    "Attachment",
    "Emulator",
    "Fault",
    "Kind",
    "OperationError",
    "ReceivedMail",
    "RequestCounters",
    "Route",
    "Stage",
    "Subscription",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name], __name__), name)
