"""Similarity report: pairs of students whose TODO code is suspiciously alike, per lab.

Only the TODO cells are compared (the given code is the same for everyone), and only after
normalisation, so that renaming variables, changing numbers and strings, adding comments or
reformatting does not hide a copy: each cell is parsed (``ast``, never run) and written as a
stream of tokens in which every variable and function name becomes ``ID`` and every literal
``LIT``, while the APIs called (attribute names, keyword names) stay. The stream is cut into
overlapping k-grams (k tokens), hashed, together with the k-grams of the cell's plain token
stream (names and literals masked the same way), which still exist when a cell does not parse:
a submission's fingerprint. The starter code and the
master's own solution are taken out of every fingerprint (what everyone is given, and the
textbook answer many find on their own), and in a class of five or more so is any k-gram that
more than 40 % of the class wrote (the idiom of the task). A pair is suspicious when most of the
smaller of the two remaining fingerprints is shared, and enough of it to mean something.

Everything is computed here, from the notebook files as text: nothing is executed, nothing
leaves the machine. A flag is a reason to look, not a verdict: the report shows the code side
by side.
"""

from __future__ import annotations

import ast
import hashlib
import html
import io
import json
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.kit.i18n import Messages

K = 8  # tokens per k-gram
THRESHOLD = 0.6  # shared share of the smaller fingerprint
MIN_SHARED = 12  # k-grams shared, at least
COMMON_SHARE = 0.4  # in a class of COMMON_FROM or more, k-grams more frequent than this are idioms
COMMON_FROM = 5
MAX_NOTEBOOK = 20 * 1024**2  # bytes read of one notebook
MAX_CELL = 50_000  # characters of one cell
MAX_SHOWN = 4_000  # characters of one cell shown in the report
MAX_DETAILED = 30  # pairs shown side by side; the others are listed one line each

# Every sentence of the report, in one place (for translation).
TEXT = Messages({
    "title": "Similar TODO code",
    "none": "No pair of students has suspiciously similar TODO code (compared after renaming, "
            "literals, comments and formatting were normalised; the given code and the master's "
            "solution left out).",
    "intro": "{n} pair(s) share most of their own TODO code once names, literals, comments and formatting "
             "are normalised. A flag is a reason to look, not a verdict.",
    "pair": "{lab}: {a} and {b}: {share:.0%} of the smaller submission's own code is shared ({shared} fragments)",
    "cell": "{todo} ({share:.0%} shared)",
    "more": "{n} more pair(s), less similar than those above:",
})
_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


@dataclass
class Pair:
    """Two students' submissions of one lab, and how much of their own code they share."""

    lab: str
    a: str
    b: str
    share: float
    shared: int
    cells: list[tuple[str, str, str, float]] = field(default_factory=list)  # todo, code of a, code of b, share


# --- Normalisation -------------------------------------------------------------------------


class _Tokens(ast.NodeVisitor):
    """A pre-order walk of the tree, as tokens: node kinds, API names kept, the rest masked."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def generic_visit(self, node: ast.AST) -> None:
        kind = type(node).__name__
        if isinstance(node, ast.Name | ast.arg):
            self.out.append("ID")
            return
        if isinstance(node, ast.Constant):
            self.out.append("LIT")
            return
        if isinstance(node, ast.expr_context):
            return
        self.out.append(kind)
        if isinstance(node, ast.Attribute):
            self.out.append("." + node.attr)
        elif isinstance(node, ast.keyword):
            self.out.append(f"{node.arg}=")
        elif isinstance(node, ast.alias):
            self.out.append(node.name)
        elif isinstance(node, ast.ImportFrom):
            self.out.append(node.module or "")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            self.out.append("ID")
        elif isinstance(node, ast.BinOp | ast.UnaryOp | ast.BoolOp | ast.AugAssign):
            self.out.append(type(node.op).__name__)
        elif isinstance(node, ast.Compare):
            self.out += [type(op).__name__ for op in node.ops]
        super().generic_visit(node)


def _without_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def normalise(source: str) -> list[str]:
    """The tokens of one cell: names and literals masked, comments and layout gone. Code that
    does not parse has none here: ``lexical`` still sees it."""
    source = _without_magics(source[:MAX_CELL])
    try:
        walker = _Tokens()
        walker.visit(ast.parse(source))
        return walker.out[1:]  # without the Module node
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []


def lexical(source: str) -> list[str]:
    """The cell as Python's tokenizer reads it (no parsing): every name ``ID`` but keywords,
    literals ``LIT``, operators kept, comments and layout gone. It works on code that does not
    parse, so a syntax error planted in a copied cell does not hide the rest of it."""
    source = _without_magics(source[:MAX_CELL])
    tokens = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME:
                tokens.append(tok.string if tok.string in _KEYWORDS else "ID")
            elif tok.type in (tokenize.NUMBER, tokenize.STRING):
                tokens.append("LIT")
            elif tok.type == tokenize.OP:
                tokens.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return tokens


_KEYWORDS = set(__import__("keyword").kwlist)


def fingerprint(tokens: list[str], kind: str = "ast") -> set[str]:
    """The hashed k-grams of a token stream (a stream shorter than k is one gram)."""
    if not tokens:
        return set()
    grams = [tokens[i: i + K] for i in range(max(1, len(tokens) - K + 1))]
    return {kind + hashlib.blake2b(" ".join(g).encode(), digest_size=8).hexdigest() for g in grams}


def cell_fingerprint(source: str) -> set[str]:
    """A cell's fingerprint: the k-grams of its syntax tree and of its token stream."""
    return fingerprint(normalise(source)) | fingerprint(lexical(source), "lex")


# --- Reading notebooks as data --------------------------------------------------------------


def todo_cells(path: Path) -> dict[str, str]:
    """grade_id -> source of the TODO cells (``todoN``) of a notebook file, read as JSON.
    A file that is not a readable notebook has none (the grade says why)."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK:
            return {}
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    found: dict[str, str] = {}
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        gid = meta.get("nbgrader", {}).get("grade_id") if isinstance(meta, dict) and isinstance(
            meta.get("nbgrader"), dict) else None
        if isinstance(gid, str) and re.fullmatch(r"todo\d+", gid):
            source = cell.get("source", "")
            found[gid] = "".join(source) if isinstance(source, list) else str(source)
    return found


def given_code(lab_id: str) -> dict[str, set[str]]:
    """grade_id -> the k-grams nobody should be flagged for: the starter cell of the student
    notebook and the master's solution."""
    from autograder.course import LABS

    lab = LABS.get(lab_id)
    if lab is None:
        return {}
    given: dict[str, set[str]] = {}
    for path, strip in ((lab.student, False), (lab.master, True)):
        for gid, source in todo_cells(path).items():
            code = _MARKERS.sub("", source) if strip else source
            given.setdefault(gid, set()).update(cell_fingerprint(code))
    return given


# --- Comparing a class ----------------------------------------------------------------------


def class_similarity(submissions: list[tuple[str, str, Path]]) -> list[Pair]:
    """Suspicious pairs among (student_id, lab, notebook path), most similar first."""
    by_lab: dict[str, list[tuple[str, Path]]] = {}
    for student, lab, path in submissions:
        by_lab.setdefault(lab, []).append((student, path))
    pairs: list[Pair] = []
    for lab, subs in sorted(by_lab.items()):
        pairs += lab_similarity(lab, subs)
    return sorted(pairs, key=lambda p: (-p.share, p.lab, p.a, p.b))


def lab_similarity(lab: str, subs: list[tuple[str, Path]]) -> list[Pair]:
    """Suspicious pairs among one lab's submissions."""
    given = given_code(lab)
    sources = {(s, p): todo_cells(p) for s, p in subs}
    prints: dict[tuple[str, Path], dict[str, set[str]]] = {
        key: {gid: cell_fingerprint(src) - given.get(gid, set()) for gid, src in cells.items()}
        for key, cells in sources.items()
    }
    if len(subs) >= COMMON_FROM:
        counts: dict[str, int] = {}
        for cells in prints.values():
            for gram in set().union(*cells.values()) if cells else set():
                counts[gram] = counts.get(gram, 0) + 1
        common = {g for g, n in counts.items() if n > COMMON_SHARE * len(subs)}
        prints = {k: {gid: grams - common for gid, grams in cells.items()} for k, cells in prints.items()}
    keys = sorted(prints, key=lambda k: (k[0], str(k[1])))
    found = []
    for i, ka in enumerate(keys):
        for kb in keys[i + 1:]:
            if ka[0] == kb[0]:  # one student's own submissions
                continue
            pair = _compare(lab, ka, kb, prints, sources)
            if pair is not None:
                found.append(pair)
    return found


def _compare(lab: str, ka: tuple[str, Path], kb: tuple[str, Path], prints: dict[tuple[str, Path], dict[str, set[str]]],
             sources: dict[tuple[str, Path], dict[str, str]]) -> Pair | None:
    a_all = {(gid, g) for gid, grams in prints[ka].items() for g in grams}
    b_all = {(gid, g) for gid, grams in prints[kb].items() for g in grams}
    smaller = min(len(a_all), len(b_all))
    shared = len(a_all & b_all)
    if smaller == 0 or shared < MIN_SHARED or shared / smaller < THRESHOLD:
        return None
    cells = []
    for gid in sorted(set(prints[ka]) & set(prints[kb]), key=lambda g: int(g[4:])):
        a, b = prints[ka][gid], prints[kb][gid]
        if a & b:
            cells.append((gid, sources[ka][gid], sources[kb][gid], len(a & b) / max(1, min(len(a), len(b)))))
    return Pair(lab, ka[0], kb[0], shared / smaller, shared, cells)


def report_html(pairs: list[Pair]) -> str:
    """The class report's section: each suspicious pair, its shared cells side by side."""
    parts = [f"<h2>{TEXT['title']}</h2>"]
    if not pairs:
        return parts[0] + f"<p>{TEXT['none']}</p>"
    parts.append(f"<p>{TEXT['intro'].format(n=len(pairs))}</p>")
    for p in pairs[:MAX_DETAILED]:
        parts.append("<h3>" + html.escape(TEXT["pair"].format(lab=p.lab, a=p.a, b=p.b, share=p.share,
                                                              shared=p.shared)) + "</h3>")
        rows = [f"<tr><th>{html.escape(p.a)}</th><th>{html.escape(p.b)}</th></tr>"]
        for gid, code_a, code_b, share in p.cells:
            rows.append(f"<tr><td colspan='2'><b>{html.escape(TEXT['cell'].format(todo=gid, share=share))}</b></td></tr>")
            rows.append(f"<tr><td><pre>{html.escape(code_a[:MAX_SHOWN])}</pre></td>"
                        f"<td><pre>{html.escape(code_b[:MAX_SHOWN])}</pre></td></tr>")
        parts.append("<table class='pair'>" + "".join(rows) + "</table>")
    if len(pairs) > MAX_DETAILED:
        rest = pairs[MAX_DETAILED:]
        items = "".join("<li>" + html.escape(TEXT["pair"].format(lab=p.lab, a=p.a, b=p.b, share=p.share,
                                                                  shared=p.shared)) + "</li>" for p in rest)
        parts.append(f"<p>{TEXT['more'].format(n=len(rest))}</p><ul>{items}</ul>")
    return "".join(parts)


def report_page(pairs: list[Pair]) -> str:
    """A page of its own (``autograder similarity``), self-contained and readable offline."""
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table.pair{border-collapse:collapse;"
             "width:100%}table.pair td{vertical-align:top;border:1px solid #ccc;width:50%}"
             "pre{white-space:pre-wrap;font-size:85%;margin:0}")
    return f"<!doctype html><meta charset='utf-8'><title>{TEXT['title']}</title><style>{style}</style>" + \
        report_html(pairs)


def as_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """The pairs as plain rows (lab, a, b, share, shared, todos), for a CSV or a terminal."""
    return [{"lab": p.lab, "a": p.a, "b": p.b, "share": round(p.share, 3), "shared": p.shared,
             "todos": " ".join(c[0] for c in p.cells)} for p in pairs]
