"""From action data to a validated core :class:`EmailMessage`: recipients, bodies and attachments.

Attachments come from allowed local paths (``allowlist_external_dirs``), media-source URIs (local media),
or live snapshots of camera and image entities (``media-source://camera/<entity_id>``). Every file is read
in the executor. Anything wrong raises a translated ``ServiceValidationError`` before anything is queued.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .const import DOMAIN
from .core.errors import OutboxFullError, ValidationError
from .core.message import DEFAULT_LIMITS, Attachment, EmailMessage, MessageLimits, Priority
from .core.mime import guess_type

MEDIA_SOURCE_PREFIX = "media-source://"
SNAPSHOT_DOMAINS = ("camera", "image")
PRIORITIES = [p.value for p in Priority]
MAX_FILE_BYTES = DEFAULT_LIMITS.max_request_bytes  # ACS takes at most 10 MB per request, base64 included
# ``cid:`` URLs in attributes and CSS (``src="cid:x"``, ``url(cid:x)``); RFC 2392 allows %-encoding
_CID_REFERENCE = re.compile(r"""(?:=\s*["']?|url\(\s*["']?)cid:([^"'\s<>)]+)""", re.IGNORECASE)


def invalid(key: str, **placeholders: str) -> ServiceValidationError:
    """A translated input error (``exceptions.<key>.message`` in strings.json)."""
    return ServiceValidationError(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders or None
    )


@dataclass(frozen=True)
class AttachmentSpec:
    """One requested attachment: a path or media-source URI, an optional name, and a content id for inline use."""

    source: str
    filename: str | None = None
    content_id: str | None = None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any]) -> AttachmentSpec:
        """A plain string (path or URI), or ``{media_source | path, filename, content_id}``."""
        if isinstance(value, str):
            return cls(value)
        source = value.get("media_source") or value.get("path")
        if not isinstance(source, str) or not source:
            raise invalid("attachment_without_source")
        return cls(source, value.get("filename") or None, value.get("content_id") or None)


async def _async_read(hass: HomeAssistant, path: Path, shown: str, *, allowlist: bool) -> bytes:
    """A local file's content, read in the executor; ``allowlist``: only under ``allowlist_external_dirs``."""

    def read() -> bytes | str:
        if allowlist and (not path.is_absolute() or not hass.config.is_allowed_path(str(path))):
            return "remote_path_not_allowed"
        try:
            real = path.resolve(strict=True)  # read what was checked, even if a symlink is swapped meanwhile
            if allowlist and not hass.config.is_allowed_path(str(real)):
                return "remote_path_not_allowed"
            status = real.stat()
            if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block this thread for ever
                return "file_unreadable"
            if status.st_size > MAX_FILE_BYTES:  # never read a file that cannot fit into a mail
                return "file_too_large"
            with real.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)  # bounded, even if the file grows meanwhile
        except FileNotFoundError:
            return "file_not_found"
        except OSError:
            return "file_unreadable"
        return "file_too_large" if len(data) > MAX_FILE_BYTES else data

    result = await hass.async_add_executor_job(read)
    if isinstance(result, str):
        raise invalid(result, path=shown, limit=f"{MAX_FILE_BYTES // 1024 // 1024} MB")
    return result


async def _snapshot(hass: HomeAssistant, domain: str, entity_id: str) -> tuple[str, bytes, str]:
    """A still image of a camera or image entity: (suggested name, bytes, content type)."""
    try:
        if domain == "camera":
            from homeassistant.components import camera  # noqa: PLC0415 - loaded only when a snapshot is asked

            image = await camera.async_get_image(hass, entity_id)
        else:
            image = await _image_entity_image(hass, entity_id)
    except HomeAssistantError as err:
        raise invalid("snapshot_failed", entity_id=entity_id, error=str(err)) from err
    extension = mimetypes.guess_extension(image.content_type) or ".jpg"
    return f"{entity_id.split('.', 1)[-1]}{extension.replace('.jpe', '.jpg')}", image.content, image.content_type


async def _image_entity_image(hass: HomeAssistant, entity_id: str) -> Any:
    from homeassistant.components import image  # noqa: PLC0415
    from homeassistant.components.image.const import DATA_COMPONENT, IMAGE_TIMEOUT  # noqa: PLC0415

    if (get_image := getattr(image, "async_get_image", None)) is not None:  # HA 2026
        return await get_image(hass, entity_id)
    component = hass.data.get(DATA_COMPONENT)  # HA 2025.4: no public helper yet
    entity = None if component is None else component.get_entity(entity_id)
    if entity is None:
        raise HomeAssistantError(f"{entity_id} not found")
    return await image._async_get_image(entity, IMAGE_TIMEOUT)


async def _media_file(hass: HomeAssistant, uri: str) -> tuple[str, bytes]:
    """A media-source URI that ends in a local file (the ``My media`` folders, or any source with a path)."""
    from homeassistant.components import media_source  # noqa: PLC0415
    from homeassistant.components.media_source.local_source import LocalSource  # noqa: PLC0415
    from homeassistant.components.media_source.models import MediaSourceItem  # noqa: PLC0415

    path: Path | None = None
    try:
        item = MediaSourceItem.from_uri(hass, uri, None)
        source = hass.data.get(media_source.DOMAIN, {}).get(item.domain)
        if isinstance(source, LocalSource):
            path = source.async_full_path(*source.async_parse_identifier(item))
        else:
            path = getattr(await media_source.async_resolve_media(hass, uri, None), "path", None)
    except (ValueError, HomeAssistantError) as err:
        raise invalid("media_source_not_found", uri=uri) from err
    if path is None:
        raise invalid("media_source_not_supported", uri=uri)
    return path.name, await _async_read(hass, path, uri, allowlist=False)


async def async_resolve_attachment(hass: HomeAssistant, spec: AttachmentSpec) -> Attachment:
    """Read one attachment; raises a translated ServiceValidationError when it cannot be used."""
    content_type: str | None = None
    if spec.source.startswith(MEDIA_SOURCE_PREFIX):
        domain, _, identifier = spec.source.removeprefix(MEDIA_SOURCE_PREFIX).partition("/")
        if domain in SNAPSHOT_DOMAINS:
            name, data, content_type = await _snapshot(hass, domain, identifier)
        else:
            name, data = await _media_file(hass, spec.source)
    else:
        path = Path(spec.source)
        name, data = path.name, await _async_read(hass, path, spec.source, allowlist=True)
    name = spec.filename or name
    if content_type is None or guess_type(name) is not None:
        content_type = None  # the file name decides, as for any attachment
    try:
        return Attachment(name, data, content_type, spec.content_id)
    except ValidationError as err:
        raise invalid("invalid_attachment", name=name, reason=err.reason) from err


async def async_resolve_attachments(
    hass: HomeAssistant, specs: Iterable[AttachmentSpec], *, inline: bool = False
) -> list[Attachment]:
    """Resolve in order; ``inline`` gives each a content id equal to its file name (``<img src="cid:name">``)."""
    attachments = []
    for spec in specs:
        attachment = await async_resolve_attachment(hass, spec)
        if inline and attachment.content_id is None:
            attachment = Attachment(attachment.name, attachment.data, attachment.content_type, attachment.name)
        attachments.append(attachment)
    return attachments


def addresses(value: str | Sequence[str] | None) -> list[str]:
    """Action fields take a list or a comma-separated string; blanks are dropped."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


@dataclass(frozen=True)
class Mail:
    """One mail as the actions describe it, before the core validates it for the sender."""

    to: Sequence[str]
    subject: str
    text: str | None
    html: str | None = None
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    reply_to: Sequence[str] = ()
    attachments: Sequence[Attachment] = ()
    priority: str = Priority.NORMAL


def _check_inline_references(mail: Mail) -> None:
    """Every ``cid:`` the HTML shows must be an attachment's content id, or the reader sees a broken image."""
    if not mail.html:
        return
    content_ids = {a.content_id for a in mail.attachments if a.content_id}
    for match in _CID_REFERENCE.finditer(mail.html):
        if unquote(match.group(1)) not in content_ids:
            raise invalid("missing_inline_image", content_id=unquote(match.group(1)))


async def async_build_message(hass: HomeAssistant, mail: Mail, *, sender: str, limits: MessageLimits) -> EmailMessage:
    """Validate everything ACS would refuse (in the executor: the size check base64-encodes attachments)."""
    if not mail.to and not mail.cc and not mail.bcc:
        raise invalid("no_recipients")
    _check_inline_references(mail)
    fields = {f.name: getattr(mail, f.name) for f in dataclasses.fields(mail)}
    build = partial(EmailMessage.build, sender=sender, limits=limits, **fields)
    try:
        if mail.attachments:
            return await hass.async_add_executor_job(build)
        return build()
    except ValidationError as err:
        raise invalid("invalid_message", field=err.field, reason=err.reason) from err


def outbox_full(err: OutboxFullError) -> HomeAssistantError:
    """The outbox is at its limit: the mail was not taken (the caller may retry later)."""
    return HomeAssistantError(
        translation_domain=DOMAIN, translation_key="outbox_full", translation_placeholders={"reason": str(err)}
    )
