"""The ACS Email attachment allow-list and file-name based type guessing."""

from __future__ import annotations

from pathlib import PurePath

# Extension -> MIME type, from the ACS "allowed attachment MIME types" page.
ALLOWED_BY_EXTENSION: dict[str, str] = {
    "3gp": "video/3gpp",
    "3g2": "video/3gpp2",
    "7z": "application/x-7z-compressed",
    "aac": "audio/aac",
    "avi": "video/x-msvideo",
    "bmp": "image/bmp",
    "csv": "text/csv",
    "doc": "application/msword",
    "docm": "application/vnd.ms-word.document.macroEnabled.12",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "eot": "application/vnd.ms-fontobject",
    "epub": "application/epub+zip",
    "gif": "image/gif",
    "gz": "application/gzip",
    "ico": "image/vnd.microsoft.icon",
    "ics": "text/calendar",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "json": "application/json",
    "mid": "audio/midi",
    "midi": "audio/midi",
    "mp3": "audio/mpeg",
    "mp4": "video/mp4",
    "mpeg": "video/mpeg",
    "oga": "audio/ogg",
    "ogv": "video/ogg",
    "ogx": "application/ogg",
    "one": "application/onenote",
    "opus": "audio/opus",
    "otf": "font/otf",
    "pdf": "application/pdf",
    "png": "image/png",
    "ppsm": "application/vnd.ms-powerpoint.slideshow.macroEnabled.12",
    "ppsx": "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
    "ppt": "application/vnd.ms-powerpoint",
    "pptm": "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "pub": "application/vnd.ms-publisher",
    "rar": "application/x-rar-compressed",
    "rpmsg": "application/vnd.ms-outlook",
    "rtf": "application/rtf",
    "svg": "image/svg+xml",
    "tar": "application/x-tar",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "ttf": "font/ttf",
    "txt": "text/plain",
    "vsd": "application/vnd.visio",
    "wav": "audio/wav",
    "weba": "audio/webm",
    "webm": "video/webm",
    "webp": "image/webp",
    "wma": "audio/x-ms-wma",
    "wmv": "video/x-ms-wmv",
    "woff": "font/woff",
    "woff2": "font/woff2",
    "xls": "application/vnd.ms-excel",
    "xlsb": "application/vnd.ms-excel.sheet.binary.macroEnabled.12",
    "xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xml": "application/xml",
    "zip": "application/zip",
}

ALLOWED_TYPES: frozenset[str] = frozenset({*ALLOWED_BY_EXTENSION.values(), "text/xml"})
_ALLOWED_LOWER = frozenset(t.lower() for t in ALLOWED_TYPES)


def guess_type(filename: str) -> str | None:
    """MIME type ACS accepts for this file name, or None when the extension is not on the allow-list."""
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    return ALLOWED_BY_EXTENSION.get(suffix)


def is_allowed(content_type: str) -> bool:
    """True when ACS accepts this MIME type (parameters such as ``; charset=`` are ignored)."""
    return content_type.split(";", 1)[0].strip().lower() in _ALLOWED_LOWER
