"""The broker connection: paho-mqtt 2.x in its network thread, messages handed to asyncio, acks on request.

paho runs its own loop thread (``loop_start``), which also reconnects with exponential backoff. Received
messages go into a deque and the asyncio side is woken at most once per drain. Nothing is acknowledged by
paho itself (``manual_ack``): the source calls ``ack`` once a message's outcome is durable. Each connection
has an *epoch*; a message is only acked on the connection it arrived on (a packet id from an earlier
connection means nothing to the broker, which redelivers those messages flagged DUP instead).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .config import MqttSettings

_LOGGER = logging.getLogger(__name__)


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
    properties: Any = None


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """What ``on_connect``/``on_disconnect`` observed, handed to the asyncio side."""

    connected: bool
    epoch: int
    session_present: bool = False
    reason: str = ""


class MqttLink:
    """One persistent MQTT session. Call ``start`` and ``stop`` from the event loop."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_messages: Callable[[], None],
        on_state: Callable[[ConnectionState], None],
    ) -> None:
        self.settings = settings
        self.inbox: collections.deque[Received] = collections.deque()
        self._on_messages = on_messages
        self._on_state = on_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # epoch and connected, between paho's thread and the loop
        self._epoch = 0
        self._connected = False
        self._signalled = False
        self._filters: tuple[str, ...] = ()
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
        if s.tls is not None:
            context = ssl.create_default_context(cafile=s.tls.ca_file)
            if s.tls.cert_file:
                context.load_cert_chain(s.tls.cert_file, s.tls.key_file, s.tls.key_password)
            if s.tls.insecure:
                context.check_hostname = False
            client.tls_set_context(context)
        client.will_set(s.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, round(s.reconnect_min)), max_delay=max(1, round(s.reconnect_max)))
        client.max_queued_messages_set(0)  # our publishes (results, state) wait for a reconnect rather than vanish
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        client.on_subscribe = self._subscribed_cb
        client.on_connect_fail = self._connect_failed_cb
        return client

    def _connect_properties(self) -> Properties | None:
        if not self.settings.v5:
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = self.settings.receive_maximum
        return props

    # ---- lifecycle (event loop) ----------------------------------------------------------------------------
    async def start(self, filters: Sequence[str]) -> None:
        """Connect in the background (retrying with backoff) and subscribe ``filters`` on every connect."""
        self._loop = asyncio.get_running_loop()
        self._filters = tuple(filters)
        s = self.settings
        if s.v5:
            self._client.connect_async(
                s.host, s.port, s.keepalive, clean_start=False, properties=self._connect_properties()
            )
        else:
            self._client.connect_async(s.host, s.port, s.keepalive)
        self._client.loop_start()

    async def stop(self, grace: float = 5.0) -> None:
        """Publish ``offline`` (retained), disconnect cleanly (no last will), stop the network thread."""
        if self.connected:
            info = self._client.publish(self.settings.status_topic, "offline", qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, grace)
        with self._lock:
            self._epoch += 1  # nothing is acked after this point
            self._connected = False
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def epoch(self) -> int:
        return self._epoch

    # ---- subscriptions -------------------------------------------------------------------------------------
    def set_filters(self, filters: Sequence[str]) -> None:
        """Change the subscriptions (on reload): subscribe the new filters, unsubscribe the removed ones."""
        new = tuple(dict.fromkeys(filters))
        added = [f for f in new if f not in self._filters]
        removed = [f for f in self._filters if f not in new]
        self._filters = new
        if self.connected:
            if removed:
                self._client.unsubscribe(removed)
            if added:
                self._subscribe(added)

    def unsubscribe(self, filters: Iterable[str]) -> None:
        """Drop subscriptions a previous configuration left in the persistent session."""
        stale = list(filters)
        if stale and self.connected:
            self._client.unsubscribe(stale)

    def _subscribe(self, filters: Sequence[str]) -> None:
        if not filters:
            return
        if self.settings.v5:
            # retainHandling=1: retained messages only for a new subscription, not on every reconnect.
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            self._client.subscribe([(f, options) for f in filters])
        else:
            self._client.subscribe([(f, 1) for f in filters])

    # ---- acks and publishing (any thread) ------------------------------------------------------------------
    def ack(self, messages: Iterable[Received]) -> int:
        """PUBACK these QoS 1 messages, in order, if their connection is still the current one; returns how many."""
        count = 0
        with self._lock:
            if not self._connected:
                return 0
            for message in messages:
                if message.qos and message.epoch == self._epoch:
                    self._client.ack(message.mid, message.qos)
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

    # ---- paho callbacks (network thread) -------------------------------------------------------------------
    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _connected_cb(self, client: mqtt.Client, _userdata: Any, flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            _LOGGER.error(
                "MQTT broker %s:%s refused the connection: %s", self.settings.host, self.settings.port, reason_code
            )
            self._call_soon(self._on_state, ConnectionState(False, self._epoch, reason=str(reason_code)))
            return
        with self._lock:
            self._epoch += 1
            self._connected = True
            epoch = self._epoch
        client.publish(self.settings.status_topic, "online", qos=1, retain=True)
        self._subscribe(self._filters)
        self._call_soon(self._on_state, ConnectionState(True, epoch, session_present=bool(flags.session_present)))

    def _disconnected_cb(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any
    ) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            self._epoch += 1
            epoch = self._epoch
        if was:
            self._call_soon(self._on_state, ConnectionState(False, epoch, reason=str(reason_code)))

    def _connect_failed_cb(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._call_soon(self._on_state, ConnectionState(False, self._epoch, reason="cannot reach the broker"))

    def _subscribed_cb(self, _client: mqtt.Client, _userdata: Any, _mid: int, codes: Any, _props: Any) -> None:
        for code in codes:
            if getattr(code, "is_failure", False) or (isinstance(code, int) and code >= 128):
                _LOGGER.error("MQTT broker refused a subscription: %s", code)

    def _message_cb(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.append(
            Received(
                msg.topic,
                bytes(msg.payload),
                msg.qos,
                bool(msg.retain),
                bool(msg.dup),
                msg.mid,
                self._epoch,
                time.time(),
                getattr(msg, "properties", None),
            )
        )
        if not self._signalled:
            self._signalled = True
            self._call_soon(self._wake)

    def _wake(self) -> None:
        self._signalled = False  # before draining: anything appended from now on signals again
        self._on_messages()
