"""Locales: BCP 47 tags validated against CLDR (Babel) and the translation fallback chain."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError


@lru_cache(maxsize=1024)
def normalise_locale(tag: str) -> str:
    """``ja_jp`` / ``JA-jp`` -> ``ja-JP``; ValueError when CLDR does not know the locale."""
    cleaned = tag.strip().replace("_", "-")
    if not cleaned or len(cleaned) > 20:
        raise ValueError(f"{tag!r} is not a locale tag")
    try:
        locale = Locale.parse(cleaned, sep="-")
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f"{tag!r} is not a known locale") from exc
    parts = [locale.language]
    if locale.script:
        parts.append(locale.script)
    if locale.territory:
        parts.append(locale.territory)
    return "-".join(parts)


def fallback_chain(locale: str) -> list[str]:
    """Most specific first: ``zh-Hant-TW`` -> ``zh-Hant-TW``, ``zh-Hant``, ``zh``.

    The catalog's default language (the base fields of a record) is the implicit last step.
    """
    parts = locale.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def pick_translation(locale: str, available: dict[str, str]) -> str | None:
    """The first locale of ``locale``'s fallback chain that ``available`` has, else None."""
    for candidate in fallback_chain(locale):
        if candidate in available:
            return candidate
    return None


def parse_accept_language(header: str | None) -> list[str]:
    """Tags from an Accept-Language header, best first (quality weights honoured)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]
