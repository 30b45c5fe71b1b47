"""Unauthenticated inspection API under ``/_emulator`` for other processes (the demo, a CLI user).

``GET /_emulator`` summary (mails, duplicates, request counters, queued faults, demo principals);
``GET /_emulator/mails/{operation_id}.eml`` one mail as RFC 5322; ``POST /_emulator/faults`` queue a
fault (JSON of :class:`Fault` fields); ``DELETE /_emulator`` forget everything (mails, kept operations,
counters, faults, quota).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from aiohttp import web

from .faults import Fault
from .mailbox import ReceivedMail
from .responses import ServiceError, json_response

PREFIX = "/_emulator"


class Inspectable(Protocol):
    def summary(self) -> dict[str, Any]: ...
    def mail(self, operation_id: str) -> ReceivedMail | None: ...
    def add_fault(self, fault: Fault) -> None: ...
    async def reset(self) -> None: ...


def admin_routes(target: Inspectable) -> list[web.RouteDef]:
    async def summary(_request: web.Request) -> web.Response:
        return json_response(target.summary())

    async def eml(request: web.Request) -> web.Response:
        mail = target.mail(request.match_info["operation_id"])
        if mail is None:
            raise ServiceError(404, "NotFound", "No such mail.")
        return web.Response(body=mail.eml_bytes(), content_type="message/rfc822")

    async def add_fault(request: web.Request) -> web.Response:
        try:
            fault = Fault.from_dict(await request.json())
        except (TypeError, ValueError, json.JSONDecodeError) as error:
            raise ServiceError(400, "BadRequest", f"Invalid fault: {error}") from None
        target.add_fault(fault)
        return json_response(fault.to_dict(), 201)

    async def reset(_request: web.Request) -> web.Response:
        await target.reset()
        return web.Response(status=204)

    return [
        web.get(PREFIX, summary, name="admin"),
        web.get(PREFIX + "/mails/{operation_id}.eml", eml, name="admin-eml"),
        web.post(PREFIX + "/faults", add_fault, name="admin-fault"),
        web.delete(PREFIX, reset, name="admin-reset"),
    ]
