"""A faithful local Azure Communication Services Email emulator (HTTPS, HMAC + fake Entra, quotas, faults)."""

from .counters import RequestCounters
from .faults import Fault, Kind, Route, Stage
from .mailbox import Attachment, OperationError, ReceivedMail
from .server import API_VERSIONS, Emulator
from .subscription import Subscription

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
