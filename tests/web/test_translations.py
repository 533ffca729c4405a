"""Every message of the back office is translated into Vietnamese, Japanese and German,
with the same placeholders as the English; and the catalogs load."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mercato.web.i18n import Gettext, translations

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "translations.py"


def _script() -> object:
    spec = importlib.util.spec_from_file_location("translations_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_message_is_translated_in_every_language() -> None:
    assert _script().problems() == []  # type: ignore[attr-defined]


def test_the_catalogs_of_a_language_are_merged_and_format_after_translating() -> None:
    translations.cache_clear()
    assert Gettext("de").gettext("Sign out") == "Abmelden"
    assert Gettext("ja").gettext("Home") == "ホーム"
    assert (
        Gettext("vi").gettext(
            "Too many failed attempts. Try again in %(seconds)s seconds.", seconds=30
        )
        == "Quá nhiều lần thử sai. Hãy thử lại sau 30 giây."
    )
    assert Gettext("en").gettext("Sign out") == "Sign out"
