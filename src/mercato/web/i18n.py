"""The back office's languages: gettext catalogs read with Babel, one per screen.

Each screen keeps its messages in ``locales/<language>/<screen>.po``; the catalogs of a
language are merged when first used, so screens never edit one shared file. English is
the source language (the msgids). ``scripts/translations.py`` extracts the messages from
the templates and pages and updates the catalogs.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from mercato.i18n import parse_accept_language
from mercato.web import LOCALE_DIR

LANGUAGES: dict[str, str] = {"en": "English", "vi": "Tiếng Việt", "ja": "日本語", "de": "Deutsch"}
DEFAULT_LANGUAGE = "en"


@cache
def translations(language: str) -> NullTranslations:
    """Every screen's catalog for ``language`` merged into one (English: the msgids)."""
    merged: NullTranslations = NullTranslations()
    folder = LOCALE_DIR / language
    if language == DEFAULT_LANGUAGE or not folder.is_dir():
        return merged
    for po_file in sorted(folder.glob("*.po")):
        with po_file.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        screen = Translations(buffer)
        if isinstance(merged, Translations):
            merged.merge(screen)
        else:
            merged = screen
    return merged


def negotiate(saved: str | None, accept_language: str | None) -> str:
    """The user's saved choice, else the browser's first language we have, else English."""
    if saved in LANGUAGES:
        return saved
    for tag in parse_accept_language(accept_language):
        language = tag.split("-")[0].lower()
        if language in LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Gettext:
    """The gettext functions a template and a page call, in one language.

    ``gettext("Hello %(name)s", name=...)`` formats after translating, as Jinja's
    new-style gettext does, so a translation may move the placeholders.
    """

    language: str

    def gettext(self, message: str, **values: Any) -> str:
        text = translations(self.language).ugettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = translations(self.language).ungettext(singular, plural, n)
        values.setdefault("num", n)
        return text % values

    def callables(self) -> dict[str, Callable[..., str]]:
        return {"gettext": self.gettext, "ngettext": self.ngettext, "_": self.gettext}
