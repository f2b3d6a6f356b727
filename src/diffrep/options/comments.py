"""The comments beside and above each option in the option tables' source, for --help.

The tables in this package say what an option means in a comment rather than in a separate docstring, so --help
reads them from the source (ast + tokenize, milliseconds, no heavy import):
- a comment at the end of a line belongs to the last option whose key is on that line;
- full-line comments right above a key, and a comment on a line that only opens a group (`"model": {  # ...` or
  `"eval": {**DPM_EVAL},  # ...`), head the first option of that group.
A group spread from another table (`{**DATA, ...}`) brings that table's comments along.
"""
from __future__ import annotations

import ast
import io
import tokenize
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@cache
def _module(name: str) -> tuple[dict, dict, dict, dict]:
    """(top-level dict assignments, names imported from sibling modules, trailing comments by line, full-line
    comments by line) of diffrep/options/NAME.py."""
    source = (HERE / f"{name}.py").read_text()
    tree = ast.parse(source)
    tables = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name) and isinstance(node.value, ast.Dict)}
    imported = {alias.asname or alias.name: node.module.rpartition(".")[2] for node in tree.body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffrep.options.")
                for alias in node.names}
    trailing, full = {}, {}
    note = None  # [line, column, last line] of the last trailing comment, which aligned lines right below continue
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        (line, column), text = tok.start, tok.string.lstrip("#").strip()
        if tok.line[:column].strip():
            trailing[line], note = text, [line, column, line]
        elif note and column == note[1] and line == note[2] + 1:
            trailing[note[0]] += " " + text  # a trailing comment wrapped onto the next lines
            note[2] = line
        else:
            full[line] = text
    return tables, imported, trailing, full


def _table(module: str, name: str) -> tuple[str, ast.Dict] | None:
    tables, imported, _, _ = _module(module)
    if name in tables:
        return module, tables[name]
    return _table(imported[name], name) if name in imported else None


def _keys(module: str, node: ast.Dict, prefix: str, leaves: dict, groups: dict) -> None:
    """leaves: dotted option -> (module, line of its key); groups: the same for keys that open a nested table."""
    for key, value in zip(node.keys, node.values):
        if key is None:  # **SPREAD: that table's keys, with their own lines and comments
            found = _table(module, value.id) if isinstance(value, ast.Name) else None
            if found:
                _keys(*found, prefix, leaves, groups)
        elif isinstance(key, ast.Constant) and isinstance(key.value, str):
            dotted = prefix + key.value
            if isinstance(value, ast.Dict) and value.keys:
                groups[dotted] = (module, key.lineno)
                _keys(module, value, dotted + ".", leaves, groups)
            else:
                leaves[dotted] = (module, key.lineno)


def _above(full: dict, line: int) -> list[str]:
    """The full-line comments right above `line`, in order."""
    lines = []
    while line - 1 in full:
        line -= 1
        lines.insert(0, full[line])
    return lines


def option_comments(module: str, name: str, options: list[str]) -> dict[str, tuple[list[str], str | None]]:
    """dotted option -> (comment lines to print above it, comment to print beside it), for the dotted `options`
    (in --help's order) of table NAME in diffrep/options/MODULE.py; options without a comment are left out."""
    found = _table(module, name)
    if found is None:
        return {}
    leaves, groups = {}, {}
    _keys(*found, "", leaves, groups)
    above: dict[str, list[str]] = {}
    beside: dict[str, str] = {}
    on_line: dict[tuple, str] = {}  # (module, line) -> the last option whose key is there
    for option in options:
        if option in leaves:
            on_line[leaves[option]] = option
    for where, option in on_line.items():
        trailing = _module(where[0])[2]
        if where[1] in trailing:
            beside[option] = trailing[where[1]]
    heads = {}  # key or group -> the first option under it, in --help's order
    for option in options:
        parts = option.split(".")
        for depth in range(1, len(parts) + 1):
            key = ".".join(parts[:depth])
            if key not in heads:
                heads[key] = option
    done = set()  # a key line that opens a group and sets a leaf is reached twice
    for key, option in heads.items():
        where = leaves.get(key) or groups.get(key)
        if where is None or where in done:
            continue
        done.add(where)
        _, _, trailing, full = _module(where[0])
        lines = _above(full, where[1])
        if key in groups and where[1] in trailing and where not in on_line:
            lines.append(trailing[where[1]])  # a line that only opens the group
        if lines:
            above[option] = above.get(option, []) + lines
    return {option: (above.get(option, []), beside.get(option)) for option in options
            if option in above or option in beside}
