"""Every test that docs/exchanges.md names in its tables exists where the table says.

Issue 11's "Done means": the table of exchange x mode (computed and reproduced, the exchange's
own ratio, refused) with every cell backed by a test. A cell names its tests as
``file.py::name``, ``::name`` (the same file as the last one the cell named), ``name[id]`` or
``[id]`` (a parametrized case, of the last test named); a renamed or moved test left its cell
backed by nothing (proof16 found six such names and seven given under another file's name).
The other pages' tables and the README's Status table are held to the same. This reads
the tables' cells and the tests' own definitions with ``ast``: nothing is run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "exchanges.md"

# one backquoted reference: a file, a ``::name``, or both, each with an optional ``[id]``, or
# an ``[id]`` alone
REFERENCE = re.compile(
    r"`(?P<file>test_[a-z0-9_]+\.py)?(?:::(?P<name>[A-Za-z0-9_]+\*?))?(?:\[(?P<id>[^\]`]+)\])?"
)


def _definitions() -> dict[str, tuple[set[str], str]]:
    """Each test file's function names and its text (where a parametrized case's id is)."""
    out = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        names = {
            node.name
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        out[path.name] = (names, text)
    return out


def _id_given(case: str, text: str) -> bool:
    """A parametrized case's id in its file: an ``ids=`` entry or a key naming the case
    (``"name"``; ``"prefix-*"`` for the family of them), or, as pytest makes an id of the
    parameters' values, each of its ``-``-joined parts a string of the file
    (``bybit-portfolio`` of ``("bybit", "portfolio")``); ``a/b`` gives two cases."""
    if "/" in case:
        return all(_id_given(one, text) for one in case.split("/"))
    if case.endswith("*"):
        return f'"{case[:-1]}' in text
    return f'"{case}"' in text or all(f'"{part}"' in text for part in case.split("-"))


def unbacked_references(doc: str) -> list[str]:
    """Each reference of a table cell of ``doc`` that names no test of the file it gives,
    described with the row it is in."""
    defs = _definitions()
    problems = []
    for line in doc.splitlines():
        if not line.startswith("| "):
            continue
        row = line.split(" | ")[0:2]
        where = " | ".join(cell.strip("| ") for cell in row)[:60]
        for cell in line.split(" | "):
            current: str | None = None
            test: str | None = None
            for match in REFERENCE.finditer(cell):
                file, name, case = match.group("file", "name", "id")
                if file is None and name is None and case is None:
                    continue
                if file is not None:
                    if file not in defs:
                        problems.append(f"{where}: {file} is no test file")
                        current = test = None
                        continue
                    current, test = file, None
                if name is not None:
                    if current is None:
                        problems.append(f"{where}: ::{name} names no file before it")
                        continue
                    names = defs[current][0]
                    if name.endswith("*"):
                        found = any(n.startswith(name[:-1]) for n in names)
                    else:
                        found = name in names
                    if not found:
                        home = sorted(f for f, (ns, _) in defs.items() if name in ns)
                        said = f" (it is in {', '.join(home)})" if home else ""
                        problems.append(f"{where}: {current} has no {name}{said}")
                        test = None
                        continue
                    test = name
                known = current is not None and test is not None
                if case is not None and known and not _id_given(case, defs[str(current)][1]):
                    problems.append(f"{where}: {current}::{test} has no case [{case}]")
    return problems


def test_every_test_the_exchanges_tables_name_exists_in_the_file_they_give() -> None:
    problems = unbacked_references(DOC.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    "doc",
    [*sorted(p.name for p in (ROOT / "docs").glob("*.md") if p != DOC), "README.md"],
)
def test_every_test_the_other_docs_tables_name_exists(doc: str) -> None:
    """The same for every table of the other pages and the README's Status table (docs/
    rules.md's fee-gap row named a test renamed since, with the behaviour it tested)."""
    path = ROOT / doc if doc == "README.md" else ROOT / "docs" / doc
    problems = unbacked_references(path.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


def test_a_renamed_test_a_wrong_file_and_a_missing_case_are_each_named() -> None:
    doc = "\n".join(
        [
            "| A | mode | computed | `test_docs_references.py::test_no_such_test` |",
            "| B | mode | computed | `test_docs_references.py::unbacked_references`, "
            "`::test_every_test_the_exchanges_tables_name_exists_in_the_file_they_give` |",
            "| C | mode | refused | `test_architecture.py::test_every_test_the_exchanges_"
            "tables_name_exists_in_the_file_they_give` |",
            "| D | mode | computed | `test_account_modes.py::test_mode_read_from_the_"
            "exchanges_answer[okx-1]`, `[no-such-case]` |",
            "| E | mode | computed | `::test_alone` |",
            "not a table row: `test_docs_references.py::test_no_such_test`",
        ]
    )
    assert unbacked_references(doc) == [
        "A | mode: test_docs_references.py has no test_no_such_test",
        "C | mode: test_architecture.py has no test_every_test_the_exchanges_tables_name_"
        "exists_in_the_file_they_give (it is in test_docs_references.py)",
        "D | mode: test_account_modes.py::test_mode_read_from_the_exchanges_answer has no "
        "case [no-such-case]",
        "E | mode: ::test_alone names no file before it",
    ]
