"""The language of every message the course prints: self-checks, feedback, grader output.

English is the source: each message is written once in English (a kit's ``MESSAGES`` or a
``_("...")`` in the grader) and looked up in the catalog of the current language, a gettext
PO file per source module and language (``locale/<lang>/LC_MESSAGES/lab01.po``, ...,
``grader.po``), read with Babel. The PO files are read as they are (no compiled ``.mo`` to
build, ship or keep in step); they are small, and read once.

The current language is, in order: the one set in this process (``set_language``, which the
set-up cell of a Spanish notebook calls, or ``using`` around a grading), else ``$COURSE_LANG``,
else English. A message missing from the catalog (or only a fuzzy guess there) prints in
English: a stale catalog shows English, never a wrong sentence, and a test fails on it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

#: The course's languages, by code, as each calls itself.
LANGUAGES = {"en": "English", "es": "Español"}
SOURCE = "en"
LOCALE_DIR = Path(__file__).with_name("locale")
ENV = "COURSE_LANG"

_chosen: str | None = None


def catalog_dir(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES"


def catalog_path(lang: str, domain: str) -> Path:
    """One PO file per source module (a kit's ``lab05``) or ``grader`` for ``_()`` calls."""
    return catalog_dir(lang) / f"{domain}.po"


def normalize(lang: object) -> str:
    """``es``, ``es_ES.UTF-8``, ``ES`` -> ``es``; anything unknown (or not text: a notebook's
    metadata is the student's) -> English."""
    if not isinstance(lang, str):
        return SOURCE
    code = (lang or "").strip().lower().replace("-", "_").split("_")[0].split(".")[0]
    return code if code in LANGUAGES else SOURCE


def language() -> str:
    """The language messages print in now."""
    return _chosen or normalize(os.environ.get(ENV))


def set_language(lang: str | None) -> str:
    """Print this process's messages in ``lang`` (``None``: back to ``$COURSE_LANG``).

    The Spanish notebooks call it in their set-up cell, so that their self-checks speak
    Spanish whatever the environment says. The choice also goes into ``$COURSE_LANG``, so
    that the programs the notebook starts (the workflow runner, a service) speak it too."""
    global _chosen
    _chosen = normalize(lang) if lang else None
    if _chosen:
        os.environ[ENV] = _chosen
    return language()


@contextlib.contextmanager
def using(lang: str | None) -> Iterator[str]:
    """Messages in ``lang`` inside the block (a grading of one notebook), then as before."""
    global _chosen
    before = _chosen
    _chosen = normalize(lang) if lang else before
    try:
        yield language()
    finally:
        _chosen = before


@functools.cache
def _catalog(lang: str) -> dict[tuple[str, str | None], str]:
    """(English text, context) -> translation, for the messages translated and not fuzzy."""
    from babel.messages.pofile import read_po  # Babel parses PO files as gettext defines them

    table: dict[tuple[str, str | None], str] = {}
    if lang == SOURCE:
        return table
    for path in sorted(catalog_dir(lang).glob("*.po")):
        with path.open("rb") as f:
            catalog = read_po(f, locale=lang, domain=path.stem)
        table.update(
            ((m.id, m.context), m.string)
            for m in catalog
            if m.id and isinstance(m.id, str) and m.string and not m.fuzzy
        )
    return table


def translate(text: str, context: str | None = None, lang: str | None = None) -> str:
    """``text`` (English) in the current language, or in ``lang``; ``context`` is the
    message's key where one English text may need two translations."""
    table = _catalog(normalize(lang) if lang else language())
    return table.get((text, context)) or table.get((text, None)) or text


class Messages(dict[str, str]):
    """A module's table of English messages by key, read in the current language:
    ``TEXT["key"]`` is the translation (the key is its gettext context), ``TEXT.english("key")``
    the source. The catalog finds the table in the module's text (``TEXT = Messages({...})``)."""

    def __getitem__(self, key: str) -> str:
        return translate(super().__getitem__(key), context=key)

    def english(self, key: str) -> str:
        return super().__getitem__(key)


def _(text: str) -> str:
    """The gettext marker of the grader's own messages (Babel extracts ``_("...")`` calls)."""
    return translate(text)


def reload() -> None:
    """Forget the catalogs read so far (after a catalog file changed)."""
    _catalog.cache_clear()
