"""The broker connection: paho-mqtt 2.x driven by the asyncio loop, messages queued for the source, acks on request.

paho runs on the event loop (its socket callbacks registered with ``add_reader``/``add_writer``) rather than in
its own thread: no lock ping-pong with the routing work, and the reader takes every packet already buffered in
one go (paho's own loops read one packet per ``select``). The connection is opened in a worker thread (DNS,
TCP and TLS handshakes block) and reopened with exponential backoff and jitter when it drops.

Nothing is acknowledged by paho itself (``manual_ack``): the source calls ``ack`` once an event's outcome is
durable. Each connection has an *epoch*; a message is only acked on the connection it arrived on (a packet id
from an earlier connection means nothing to the broker, which redelivers those messages flagged DUP instead).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .config import MqttSettings, tls_context

_LOGGER = logging.getLogger(__name__)
OVERHEAD = 600  # bytes a queued message costs beyond its payload (counted against inbox_bytes)
READ_BURST = 1000  # packets taken per readable socket before the loop runs other work
MISC_INTERVAL = 1.0  # seconds between paho's keepalive/timeout checks


@dataclass(slots=True)
class Received:
    """One message as paho delivered it, tagged with the connection it came on."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    epoch: int
    received_at: float
    user_properties: tuple[tuple[str, str], ...] = ()
    response_topic: str | None = None
    correlation_data: bytes | None = None
    event_id: str | None = None  # set by the source (journal) once, kept if its batch is retried
    seq: int | None = None  # the journal row
    retried: bool = False  # its batch failed once after routing


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """What a connect or disconnect observed."""

    connected: bool
    epoch: int
    session_present: bool = False
    reason: str = ""
    attempt: bool = False  # a connection attempt failed (rather than a connection ending)


class MqttLink:
    """One persistent MQTT session. Use from the event loop only."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_messages: Callable[[], None],
        on_state: Callable[[ConnectionState], None],
    ) -> None:
        self.settings = settings
        self.inbox: collections.deque[Received] = collections.deque()
        self.inbox_bytes = 0  # payload bytes in the inbox; reading pauses above settings.inbox_bytes
        self.pauses = 0  # times reading paused for the source to catch up
        self._on_messages = on_messages
        self._on_state = on_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._epoch = 0
        self._connected = False
        self._filters: tuple[str, ...] = ()
        # Filters the broker's persistent session holds already (the source keeps them across restarts): MQTT
        # 3.1.1 has no retain handling, so subscribing to them again would resend every retained message.
        self.session_filters: tuple[str, ...] = ()
        self._refused = False  # the broker refused a subscription of the current connection
        self._sock: Any = None
        self._reading = False
        self._closed = asyncio.Event()  # the current connection attempt or connection ended
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._misc: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[Any] | None = None  # the connect() running in a worker thread
        self._replies: dict[int, asyncio.Future[None]] = {}  # SUBACK/UNSUBACK awaited, by packet id
        self._subscription: asyncio.Future[None] | None = None  # SUBACK of the current connection's subscribe
        self._received = 0  # messages paho handed over, ever (the reader's progress check)
        self._confirmed = False  # the current connection got a successful CONNACK
        self._client = self._make_client()

    # ---- setup ---------------------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if s.v5 else mqtt.MQTTv311,
            clean_session=None if s.v5 else False,
            manual_ack=True,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        client.will_set(s.status_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(0)  # our publishes (results, state) wait for a reconnect rather than vanish
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        client.on_subscribe = self._subscribed_cb
        client.on_unsubscribe = self._unsubscribed_cb
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        return client

    def _connect_properties(self) -> Properties | None:
        if not self.settings.v5:
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = self.settings.receive_maximum
        return props

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, filters: Sequence[str]) -> None:
        """Connect in the background (retrying with backoff) and subscribe ``filters`` on every connect.

        Raises ConfigError when the TLS files cannot be read: a config error, not a network one.
        """
        if self.settings.tls is not None:
            self._client.tls_set_context(await asyncio.to_thread(tls_context, self.settings.tls))
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._filters = tuple(filters)
        self._stopping = False
        self._runner = asyncio.create_task(self._run(), name="acs-email-mqtt connection")
        self._misc = asyncio.create_task(self._keepalive(), name="acs-email-mqtt keepalive")

    async def stop(self, grace: float = 5.0) -> None:
        """Publish ``offline`` (retained), disconnect cleanly (no last will), stop reconnecting."""
        self._stopping = True
        if self.connected:
            info = self._client.publish(self.settings.status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while not info.is_published() and self.connected:  # noqa: ASYNC110 - paho has no awaitable
                        await asyncio.sleep(0.01)
        self._epoch += 1  # nothing is acked after this point
        if self.connected:
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._closed.wait()
        self._connected = False
        for task in (self._runner, self._misc):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._misc = None
        if self._connecting is not None:  # let a connect in progress end (and collect its outcome)
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._connecting), grace)
            await asyncio.sleep(0)  # its socket registration (scheduled from the thread) sees _stopping
        self._socket_close(self._client, None, self._sock)

    async def _run(self) -> None:
        """Connect, wait for the connection to end, back off, repeat."""
        delay = self.settings.reconnect_min
        s = self.settings
        while not self._stopping:
            self._closed.clear()
            self._confirmed = False
            if s.v5:
                args: tuple[Any, ...] = (s.host, s.port, s.keepalive)
                kwargs: dict[str, Any] = {"clean_start": False, "properties": self._connect_properties()}
            else:
                args, kwargs = (s.host, s.port, s.keepalive), {}
            self._connecting = asyncio.ensure_future(asyncio.to_thread(self._client.connect, *args, **kwargs))
            try:
                await asyncio.shield(self._connecting)
            except (OSError, ssl.SSLError, ValueError) as err:
                self._on_state(ConnectionState(False, self._epoch, reason=str(err), attempt=True))
                self._closed.set()
            await self._closed.wait()
            delay = s.reconnect_min if self._confirmed else min(delay * 2, s.reconnect_max)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # stop() cancels this task

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL)
            if self._sock is not None:
                self._client.loop_misc()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def epoch(self) -> int:
        return self._epoch

    # ---- socket callbacks (paho; possibly from the connecting thread) --------------------------------------
    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        def register() -> None:
            if self._stopping:  # a connect that finished after stop(): drop it
                with contextlib.suppress(OSError):
                    sock.close()
                return
            self._sock = sock
            self._resume_reading()

        self._on_loop(register)

    def _socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        def unregister() -> None:
            if sock is None or sock is not self._sock or self._loop is None:
                return
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            self._sock = None
            self._reading = False

        self._on_loop(unregister)

    def _register_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        def register() -> None:
            if sock is self._sock and self._loop is not None:
                self._loop.add_writer(sock, self._writable)

        self._on_loop(register)

    def _unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        def unregister() -> None:
            if sock is self._sock and self._loop is not None:
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_writer(sock)

        self._on_loop(unregister)

    def _writable(self) -> None:
        self._client.loop_write()

    def _readable(self) -> None:
        """Take every complete packet already buffered (paho reads one per call)."""
        for _ in range(READ_BURST):
            before = self._received
            rc = self._client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._received == before or not self._reading:
                break
        if self.inbox:
            self._on_messages()

    def _pause_reading(self) -> None:
        if self._reading and self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)
            self._reading = False
            self.pauses += 1

    def _resume_reading(self) -> None:
        if not self._reading and self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock, self._readable)
            self._reading = True

    def taken(self, size: int) -> None:
        """The source took messages out of the inbox; reading resumes once it is below half its byte budget."""
        self.inbox_bytes -= size
        if not self._reading and self.inbox_bytes <= self.settings.inbox_bytes // 2:
            self._resume_reading()

    # ---- subscriptions -------------------------------------------------------------------------------------
    async def set_filters(self, filters: Sequence[str], grace: float = 10.0) -> tuple[str, ...]:
        """Change the subscriptions (on reload); returns once the broker confirmed them (or after ``grace`` s).

        Returns the added filters the broker's session now holds: none unless it accepted all of them in time.
        """
        new = tuple(dict.fromkeys(filters))
        added = [f for f in new if f not in self._filters]
        removed = [f for f in self._filters if f not in new]
        self._filters = new
        if not self.connected:
            return ()  # the next connect subscribes the new set
        epoch = self._epoch
        pending = []
        if removed:
            pending.append(self._expect(self._client.unsubscribe(removed)[1]))
        if added:
            pending.append(self._expect(self._subscribe(added)))
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*pending)
        except TimeoutError:
            return ()
        held = self._connected and self._epoch == epoch and not self._refused  # a refusal stays set until reconnect
        return tuple(added) if held else ()

    def _expect(self, mid: int | None) -> asyncio.Future[None]:
        """A future resolved by the SUBACK/UNSUBACK of ``mid``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if mid is None:
            future.set_result(None)
        else:
            self._replies[mid] = future
        return future

    def _replied(self, mid: int) -> None:
        future = self._replies.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def subscribed(self, grace: float = 10.0) -> None:
        """Wait for the SUBACK of this connection's subscriptions (or ``grace`` seconds)."""
        if self._subscription is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.shield(self._subscription)

    def subscriptions_accepted(self, epoch: int) -> bool:
        """The broker accepted every subscription of connection ``epoch``, which is still the current one."""
        done = self._subscription is not None and self._subscription.done()
        return done and self._connected and self._epoch == epoch and not self._refused

    async def unsubscribe(self, filters: Iterable[str], grace: float = 10.0) -> None:
        """Drop subscriptions a previous configuration left in the persistent session (waits for the UNSUBACK)."""
        stale = list(filters)
        if stale and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._expect(self._client.unsubscribe(stale)[1])

    def _subscribe(self, filters: Sequence[str]) -> int | None:
        if not filters:
            return None
        if self.settings.v5:
            # retainHandling=1: retained messages only for a new subscription, not on every reconnect.
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            return self._client.subscribe([(f, options) for f in filters])[1]
        return self._client.subscribe([(f, 1) for f in filters])[1]

    # ---- acks and publishing -------------------------------------------------------------------------------
    def ack(self, messages: Iterable[Received]) -> int:
        """PUBACK these QoS 1 messages, in order, if their connection is still the current one; returns how many."""
        if not self._connected:
            return 0
        count = 0
        client, epoch = self._client, self._epoch
        for message in messages:
            if message.qos and message.epoch == epoch:
                client.ack(message.mid, message.qos)
                count += 1
        return count

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False, **props: Any) -> None:
        """Queue a publish (sent now, or after the next reconnect)."""
        properties = None
        if props and self.settings.v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            for name, value in props.items():
                setattr(properties, name, value)
        self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    # ---- paho callbacks (event loop) -----------------------------------------------------------------------
    def _connected_cb(self, client: mqtt.Client, _userdata: Any, flags: Any, reason_code: Any, _props: Any) -> None:
        if self._stopping:
            return
        if reason_code.is_failure:
            _LOGGER.error(
                "MQTT broker %s:%s refused the connection: %s", self.settings.host, self.settings.port, reason_code
            )
            self._on_state(ConnectionState(False, self._epoch, reason=f"refused: {reason_code}"))
            return
        self._epoch += 1
        self._connected = True
        self._confirmed = True
        client.publish(self.settings.status_topic, "online", qos=1, retain=True)
        self._refused = False
        if not flags.session_present:
            self.session_filters = ()  # a new session holds nothing, whatever an earlier one did
        held = self.session_filters if not self.settings.v5 else ()
        self._subscription = self._expect(self._subscribe([f for f in self._filters if f not in held]))
        self._on_state(ConnectionState(True, self._epoch, session_present=bool(flags.session_present)))

    def _disconnected_cb(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any
    ) -> None:
        def closed() -> None:
            was = self._connected
            self._connected = False
            self._epoch += 1
            self._closed.set()
            for future in self._replies.values():  # no SUBACK will come: the next connect subscribes anew
                if not future.done():
                    future.set_result(None)
            self._replies.clear()
            if was and not self._stopping:
                self._on_state(ConnectionState(False, self._epoch, reason=str(reason_code)))

        self._on_loop(closed)

    def _subscribed_cb(self, _client: mqtt.Client, _userdata: Any, mid: int, codes: Any, _props: Any) -> None:
        for code in codes:
            if getattr(code, "is_failure", False) or (isinstance(code, int) and code >= 128):
                _LOGGER.error("MQTT broker refused a subscription: %s", code)
                self._refused = True
        self._replied(mid)

    def _unsubscribed_cb(self, _client: mqtt.Client, _userdata: Any, mid: int, *_args: Any) -> None:
        self._replied(mid)

    def _message_cb(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        received = Received(
            msg.topic, payload, msg.qos, bool(msg.retain), bool(msg.dup), msg.mid, self._epoch, time.time()
        )
        props = getattr(msg, "properties", None)
        if props is not None:  # keep the few fields we use, not paho's Properties object
            received.user_properties = tuple((str(k), str(v)) for k, v in getattr(props, "UserProperty", ()))
            received.response_topic = getattr(props, "ResponseTopic", None)
            received.correlation_data = getattr(props, "CorrelationData", None)
        self.inbox.append(received)
        self._received += 1
        self.inbox_bytes += len(payload) + OVERHEAD
        if self.inbox_bytes > self.settings.inbox_bytes:
            self._pause_reading()  # TCP backpressure until the source catches up
