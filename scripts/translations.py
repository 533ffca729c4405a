#!/usr/bin/env python3
"""The back office's translations: extract the messages, update the catalogs, check them.

Messages are English msgids in the templates (``_("...")``, ``{% trans %}``) and in the
page modules (``_()``/``gettext()``, ``N_()`` for labels translated later). Each screen
has its own catalog per language, ``src/mercato/web/locales/<lang>/<screen>.po``:

* screen ``X``: ``web/X.py``, ``web/X_*.py`` and ``web/templates/X/``;
* ``core``: every other page module and template (layout, sign-in, account, errors).

    python scripts/translations.py update   # add new messages, drop unused ones
    python scripts/translations.py check    # every message translated in every language

``update`` keeps every existing translation; a new message gets an empty one to fill in.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "src" / "mercato" / "web"
TEMPLATES = WEB / "templates"
LOCALES = WEB / "locales"
LANGUAGES = ("vi", "ja", "de")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def screens() -> list[str]:
    found = {path.name for path in TEMPLATES.iterdir() if path.is_dir()}
    return ["core", *sorted(found)]


def files_of(screen: str) -> Iterator[tuple[Path, str]]:
    others = set(screens()) - {"core"}
    if screen == "core":
        for path in sorted(WEB.glob("*.py")):
            if path.stem.split("_")[0] not in others:
                yield path, "python"
        for path in sorted(TEMPLATES.glob("*.html")):
            yield path, "jinja2"
        return
    for path in sorted(WEB.glob("*.py")):
        if path.stem == screen or path.stem.startswith(f"{screen}_"):
            yield path, "python"
    for path in sorted((TEMPLATES / screen).rglob("*.html")):
        yield path, "jinja2"


def extract(screen: str) -> Catalog:
    catalog = Catalog(project="Mercato", fuzzy=False)
    for path, method in files_of(screen):
        options = JINJA_OPTIONS if method == "jinja2" else {}
        extractor = "jinja2.ext:babel_extract" if method == "jinja2" else "python"
        for lineno, message, comments, context in extract_from_file(
            extractor, path, keywords=KEYWORDS, options=options
        ):
            catalog.add(
                message,
                locations=[(str(path.relative_to(ROOT)), lineno)],
                auto_comments=comments,
                context=context,
            )
    return catalog


def _read(path: Path, language: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


def update() -> None:
    for screen in screens():
        template = extract(screen)
        for language in LANGUAGES:
            path = LOCALES / language / f"{screen}.po"
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = _read(path, language) if path.exists() else Catalog(locale=language)
            catalog.update(template, no_fuzzy_matching=True)
            catalog.obsolete.clear()
            with path.open("wb") as handle:
                write_po(handle, catalog, width=100, omit_header=True, sort_output=True)
        print(f"{screen}: {len(template)} messages")


def problems() -> list[str]:
    found: list[str] = []
    for screen in screens():
        template = extract(screen)
        for language in LANGUAGES:
            path = LOCALES / language / f"{screen}.po"
            if not path.exists():
                found.append(f"{language}/{screen}.po is missing")
                continue
            catalog = _read(path, language)
            for message in template:
                if not message.id:
                    continue
                translated = catalog.get(message.id, context=message.context)
                ids = message.id if isinstance(message.id, tuple) else (message.id,)
                strings = (
                    translated.string
                    if translated is not None and isinstance(translated.string, tuple)
                    else (translated.string,) if translated is not None else ("",)
                )
                if not all(strings):
                    found.append(f"{language}/{screen}.po: {ids[0]!r} is not translated")
                    continue
                wanted = set(PLACEHOLDER.findall(" ".join(ids)))
                for text in strings:
                    if set(PLACEHOLDER.findall(text)) != wanted:
                        found.append(
                            f"{language}/{screen}.po: {ids[0]!r} has other placeholders"
                        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["update", "check"])
    args = parser.parse_args()
    if args.command == "update":
        update()
        return 0
    found = problems()
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
