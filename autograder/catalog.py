"""The message catalogs: every sentence the course prints, in each language.

Two kinds of source, both English: each kit's ``MESSAGES`` dict (self-checks and judgments,
keyed, so the key becomes the message's gettext context) and the grader's ``_("...")`` calls
(feedback, reports, command-line errors), found by Babel's own Python extractor. Both are
read from the source text, never imported, so the catalog can be made without MLflow.

``update`` merges them into each language's PO file (Babel's ``Catalog.update``: a changed
English text keeps its old translation as a fuzzy guess, which the catalog does not use and
``problems`` reports); ``problems`` is what the tests assert empty.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

from autograder.course import ROOT
from autograder.kit import i18n

PACKAGE = ROOT / "autograder"
#: Where the grader's ``_()`` calls are looked for: the package, its kit and the references
#: (their messages reach the feedback; the catalogs hold only the sentences, never an answer).
SOURCES = ("*.py", "kit/*.py", "references/*.py")
PROJECT = "mlops-course"


#: The names of a module's message tables: a kit's ``MESSAGES`` (read through
#: ``checking.message``) and the grader's ``TEXT = Messages({...})``.
TABLES = ("MESSAGES", "TEXT")


def kit_messages(path: Path) -> Iterator[tuple[str, str, int]]:
    """(key, English text, line) of a module's message table literal, if it has one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        if isinstance(value, ast.Call) and value.args:  # Messages({...})
            value = value.args[0]
        if any(isinstance(t, ast.Name) and t.id in TABLES for t in targets) and isinstance(value, ast.Dict):
            for key, text in zip(value.keys, value.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(text, ast.Constant):
                    yield key.value, text.value, text.lineno


def source_files() -> list[Path]:
    return sorted({p for pattern in SOURCES for p in PACKAGE.glob(pattern)})


#: The domain of the grader's ``_()`` messages, wherever they are written.
GRADER = "grader"


def templates() -> dict[str, Catalog]:
    """Every English message of the course, by domain (a kit module with ``MESSAGES``, or
    ``grader``), as catalogs with no translations. One file per domain keeps each lab's
    messages in a file of their own: a translator of Lab 05 touches only ``lab05.po``."""
    cats: dict[str, Catalog] = {}

    def cat(domain: str) -> Catalog:
        return cats.setdefault(domain, Catalog(project=PROJECT, domain=domain, fuzzy=False))

    for path in source_files():
        where = path.relative_to(ROOT).as_posix()
        for key, text, line in kit_messages(path):
            cat(path.stem).add(text, context=key, locations=[(where, line)], flags=_flags(text))
        for line, text, _comments, _context in extract_from_file(
            "python", str(path), keywords={"_": None}, comment_tags=("TRANSLATORS:",)
        ):
            if isinstance(text, str) and text:
                cat(GRADER).add(text, locations=[(where, line)], flags=_flags(text))
    return cats


def _flags(text: str) -> tuple[str, ...]:
    return ("python-brace-format",) if placeholders(text) else ()


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a ``str.format`` template (format specs aside)."""
    try:
        return {field for _lit, field, _spec, _conv in string.Formatter().parse(text) if field is not None}
    except ValueError:
        return {"<malformed>"}


def read(lang: str, domain: str) -> Catalog:
    path = i18n.catalog_path(lang, domain)
    if not path.is_file():
        return Catalog(locale=lang, project=PROJECT, domain=domain, copyright_holder=COPYRIGHT,
                       header_comment=HEADER.format(language=i18n.LANGUAGES.get(lang, lang), domain=domain),
                       language_team=f"{i18n.LANGUAGES.get(lang, lang)} edition of the course")
    with path.open("rb") as f:
        return read_po(f, locale=lang, domain=domain)


COPYRIGHT = "the MLOps course authors"
HEADER = (
    "# {language} messages of the MLOps course: {domain}.\n"
    "# Made by `python -m autograder translate catalog`; translate each msgstr (keep {{names}} as they are).\n"
    "#"
)


def write(cat: Catalog, lang: str, domain: str) -> Path:
    path = i18n.catalog_path(lang, domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        # No line folding and no locations: diffs stay one line per change, and a moved
        # message does not rewrite the file.
        write_po(f, cat, width=0, omit_header=False, no_location=True, sort_output=True,
                 ignore_obsolete=True, include_previous=True)
    i18n.reload()
    return path


def update(lang: str) -> tuple[int, int]:
    """Merge the current English messages into ``lang``'s catalogs; (messages, untranslated)."""
    total = missing = 0
    for domain, template in templates().items():
        cat = read(lang, domain)
        created = cat.creation_date  # update() would take the template's: a new date every run
        cat.update(template, update_header_comment=False)
        cat.creation_date, cat.fuzzy, cat.version = created, False, "1"
        write(cat, lang, domain)
        total += sum(1 for m in cat if m.id)
        missing += sum(1 for m in cat if m.id and (not m.string or m.fuzzy))
    return total, missing


def problems(lang: str) -> list[str]:
    """What keeps ``lang``'s catalogs from covering every English message, one line each."""
    out = []
    sources = templates()
    out += [f"obsolete: {path.relative_to(ROOT)} (no module has these messages any more)"
            for path in sorted(i18n.catalog_dir(lang).glob("*.po")) if path.stem not in sources]
    for domain, template in sources.items():
        cat = read(lang, domain)
        for msg in template:
            if not msg.id:
                continue
            found = cat.get(msg.id, context=msg.context)
            where = f"{msg.locations[0][0]}:{msg.locations[0][1]}" if msg.locations else domain
            label = f"{where} {msg.context + ': ' if msg.context else ''}{msg.id[:60]!r}"
            if found is None or not found.string:
                out.append(f"untranslated: {label}")
            elif found.fuzzy:
                out.append(f"stale (the English changed): {label}")
            elif placeholders(found.string) != placeholders(msg.id):
                out.append(f"placeholders differ ({sorted(placeholders(found.string))}): {label}")
    return out


def translations(lang: str) -> Iterator[tuple[str, str, str | None]]:
    """(English, translation, context) of every translated message of ``lang``."""
    for path in sorted(i18n.catalog_dir(lang).glob("*.po")):
        for msg in read(lang, path.stem):
            if msg.id and msg.string and not msg.fuzzy:
                yield msg.id, msg.string, msg.context
