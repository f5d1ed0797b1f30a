"""Other languages' notebooks, generated from the same masters.

A master's translation lives beside it, ``solutions/NN_x/NN_x.<lang>.yml``: for each cell a
student reads (every markdown cell, and every code cell with a comment), keyed by the cell's
id, the translated source and the hash of the English source it was made from. When the
English changes, the hash no longer matches: the cell is stale and the tests say which.

A translated code cell may change only its comments: its code must tokenize to the English
cell's tokens, so the solutions of every edition grade alike. The translated master is the
English master with those sources put in, the notebook's language in its metadata, and one
line in the set-up cell that sets the kit's messages to that language; the student notebook
is made from it exactly as the English one is (``generate.student_version``).
"""

from __future__ import annotations

import hashlib
import io
import re
import tokenize
from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat import NotebookNode

from autograder.course import SOLUTIONS_DIR, Lab
from autograder.kit import i18n

#: The cell whose first lines set the kit's language (every lab has one).
SETUP_CELL = "setup"
HASH_CHARS = 12
MARKER = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")


class TranslationError(Exception):
    """A translation cannot be used; the message says which cells, one line."""


def path(lab: Lab, lang: str) -> Path:
    return SOLUTIONS_DIR / lab.lab_id / f"{lab.lab_id}.{lang}.yml"


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def translatable(cell: NotebookNode) -> bool:
    """Whether a student reads words in this cell: markdown, or code with a comment."""
    if cell.cell_type == "markdown":
        return bool(cell.source.strip())
    if cell.cell_type == "code":
        return any(_comment(line) for line in cell.source.splitlines() if not MARKER.match(line))
    return False


def _comment(line: str) -> bool:
    return bool(re.search(r"(^|\s)#", line))


def code_tokens(source: str) -> list[str]:
    """What a code cell does, without its comments: its Python tokens in order, with the
    indentation and the ends of statements, and nbgrader's markers where they stand (a marker
    moved past an answer would hand the answer out); for a cell Python cannot tokenize (a YAML
    file written by ``%%writefile``, a shell line) each line, indentation kept, with its ``#``
    comment cut off."""
    try:
        out = []
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                if MARKER.match(tok.string):
                    out.append(tok.string.strip())
            elif tok.type in (tokenize.NEWLINE, tokenize.DEDENT):
                out.append(tokenize.tok_name[tok.type])  # '' or '\n' at the end: the type says it
            elif tok.type not in (tokenize.NL, tokenize.ENDMARKER):
                out.append(tok.string)  # an INDENT's string is the indentation itself
        return out
    except (tokenize.TokenError, IndentationError, SyntaxError):
        lines = []
        for line in source.splitlines():
            if MARKER.match(line):
                lines.append(line.strip())
            elif (cut := re.sub(r"(^|\s)#.*$", "", line).rstrip()).strip():
                lines.append(cut)
        return lines


def load(lab: Lab, lang: str) -> dict[str, dict[str, Any]]:
    """The translation file of ``lab`` in ``lang``: cell id -> {"en": hash, "text": source}."""
    p = path(lab, lang)
    if not p.is_file():
        return {}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TranslationError(f"{p}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise TranslationError(f"{p}: expected a mapping of cell id to translation")
    return {str(k): v for k, v in data.items()}


def problems(lab: Lab, lang: str, master: NotebookNode | None = None) -> list[str]:
    """Why ``lab``'s translation into ``lang`` is not complete and current, one line each."""
    master = master or nbformat.read(lab.master, as_version=4)
    entries = load(lab, lang)
    out = []
    ids = set()
    for cell in master.cells:
        ids.add(cell.id)
        if not translatable(cell):
            continue
        where = f"{lab.lab_id} cell {cell.id} ({_grade_id(cell) or cell.cell_type})"
        entry = entries.get(cell.id)
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str) or not entry["text"].strip():
            out.append(f"{where}: not translated")
        elif entry["text"].strip() == cell.source.strip():
            out.append(f"{where}: still the English text")
        elif entry.get("en") != source_hash(cell.source):
            out.append(f"{where}: stale (the English changed since it was translated)")
        elif cell.cell_type == "code" and code_tokens(entry["text"]) != code_tokens(cell.source):
            out.append(f"{where}: its code differs from the English cell's (only comments may change)")
    out += [f"{lab.lab_id} cell {k}: no such cell in the master" for k in entries if k not in ids]
    return out


def translated_master(lab: Lab, lang: str, master: NotebookNode | None = None) -> NotebookNode:
    """The master of ``lab`` in ``lang``; ``TranslationError`` when the translation is not
    complete and current."""
    master = master or nbformat.read(lab.master, as_version=4)
    issues = problems(lab, lang, master)
    if issues:
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise TranslationError(f"{issues[0]}{more}")
    entries = load(lab, lang)
    nb = nbformat.from_dict(master)
    for cell in nb.cells:
        if cell.id in entries and translatable(cell):
            cell.source = entries[cell.id]["text"].rstrip("\n")
        if _grade_id(cell) == SETUP_CELL:
            cell.source = language_line(lang) + cell.source
    nb.metadata.setdefault("course", {})["language"] = lang
    return nb


def language_line(lang: str) -> str:
    """The set-up cell's first lines in a translated notebook: its self-checks then speak
    ``lang`` whatever ``$COURSE_LANG`` says."""
    return f'from autograder.kit import i18n\n\ni18n.set_language("{lang}")\n\n'


def skeleton(lab: Lab, lang: str) -> tuple[Path, int]:
    """Add every translatable cell missing from ``lab``'s translation file, with its English
    source as the text to translate and its hash; keep what is there. Returns the file and how
    many cells were added."""
    master = nbformat.read(lab.master, as_version=4)
    entries = load(lab, lang)
    added = 0
    out: dict[str, dict[str, Any]] = {}
    for cell in master.cells:
        if not translatable(cell):
            continue
        if cell.id in entries:
            out[cell.id] = entries[cell.id]
        else:
            out[cell.id] = {"en": source_hash(cell.source), "text": cell.source}
            added += 1
    out.update({k: v for k, v in entries.items() if k not in out})
    write(lab, lang, out)
    return path(lab, lang), added


class _Literal(yaml.SafeDumper):
    """Multi-line texts as YAML block scalars, so a translation reads like the cell."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Literal.add_representer(str, _str)


def write(lab: Lab, lang: str, entries: dict[str, dict[str, Any]]) -> Path:
    p = path(lab, lang)
    body = yaml.dump(entries, Dumper=_Literal, allow_unicode=True, sort_keys=False, width=100)
    header = (f"# {i18n.LANGUAGES.get(lang, lang)} text of {lab.lab_id}.ipynb, by cell id. `en`: the hash of "
              "the English source it translates\n# (python -m autograder translate status says which "
              "cells are missing or stale).\n")
    p.write_text(header + body, encoding="utf-8", newline="\n")
    return p


# --- English left in a translation -------------------------------------------------------
# Words that mark a sentence as English and never occur in Spanish prose, and Spanish words
# that outweigh them (a sentence naming "Model training" or "the run's Artifacts tab" in
# Spanish words stays Spanish).
ENGLISH_WORDS = frozenset(
    ["the", "and", "of", "to", "is", "are", "with", "this", "that", "these", "your", "you", "it", "its", "for", "from", "not", "be", "by", "an", "which", "what", "when", "then", "will", "can", "have", "was", "were", "into", "only", "if", "so", "or", "but", "does", "each", "every", "in", "on", "at", "they", "there", "their", "we", "our", "how"]
)
SPANISH_WORDS = frozenset(
    ["el", "la", "los", "las", "de", "del", "que", "en", "un", "una", "es", "son", "con", "por", "para", "se", "su", "sus", "al", "lo", "como", "más", "pero", "este", "esta", "estos", "estas", "cada", "si", "no", "y", "o", "tu", "tus", "ya", "hay", "le"]
)
_NOT_PROSE = re.compile(
    r"```.*?```|`[^`]*`|\$[^$]*\$|https?://\S+|\]\([^)]*\)|<[^>]+>|\{[^}]*\}|'[^'\n]*'|\"[^\"\n]*\"",
    re.S,
)


def english_sentences(text: str) -> list[str]:
    """Sentences of ``text`` that read as English: code, links, names in quotes and
    placeholders aside, at least two English-only words and more of them than Spanish ones."""
    prose = _NOT_PROSE.sub(" ", text)
    found = []
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n\s*\n|\n[-*] |\n#+ ", prose):
        words = [w.lower() for w in re.findall(r"[A-Za-zÁÉÍÓÚÜÑáéíóúüñ]+", sentence)]
        en = sum(w in ENGLISH_WORDS for w in words)
        es = sum(w in SPANISH_WORDS for w in words)
        if en >= 2 and en > es:
            found.append(" ".join(sentence.split())[:120])
    return found


def comments(source: str) -> str:
    """The comments of a code cell, one per line (what a student reads there)."""
    return "\n".join(
        m.group(1) for line in source.splitlines() if not MARKER.match(line)
        for m in [re.search(r"(?:^|\s)#+\s?(.*)$", line)] if m
    )
