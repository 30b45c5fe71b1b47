"""Port 465 (implicit TLS): the TCP connection is accepted and counted first, then TLS is started on it.

With ``create_server(ssl=...)`` asyncio hands a connection to the protocol only once its TLS handshake is
done: a client that connects and never sends its ClientHello holds a file descriptor for a minute, beyond
the relay's session limits. Here such connections count against the limits from their first moment.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from .metrics import UNKNOWN

if TYPE_CHECKING:
    from .relay import RelayState
    from .server import RelaySMTP

HANDSHAKE_TIMEOUT = 30.0  # seconds; old printers are slow, but a handshake is a few round trips


class ImplicitTls(asyncio.Protocol):
    """Holds one accepted connection until its TLS handshake is done, then hands it to an SMTP session."""

    def __init__(self, state: RelayState, session: Callable[[], RelaySMTP], context: ssl.SSLContext) -> None:
        self.state = state
        self.session = session
        self.context = context
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello is for the TLS layer that start_tls puts in between
        peer = transport.get_extra_info("peername")
        peer_ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self.state.sessions_refusal(peer_ip) is not None:
            self.state.metrics.on_refused(UNKNOWN, "sessions")
            transport.close()  # no SMTP reply can be read before TLS
            return
        self.state.handshakes[transport] = peer_ip
        self.task = asyncio.get_running_loop().create_task(self._start_tls(transport))

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        session = self.session()
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport, session, self.context, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
        except ssl.SSLError as err:  # a failed handshake ends that connection only
            self.state.tls_failed(self.state.handshakes.get(transport, "?"), err)
            tls = None
        except (OSError, TimeoutError, EOFError):  # gone or silent during the handshake: nothing to tell
            tls = None
        finally:
            self.state.handshakes.pop(transport, None)
        if tls is None:
            transport.close()
        else:
            session.connection_made(tls)
