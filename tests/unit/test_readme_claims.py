"""README's "What is verified, and how" table names, in its `tests` column, the tests that prove each claim,
and every one of them exists: the file in the repository, and in it the test function the row names.

A row is `| claim | how | tests |`; its tests cell lists entries in backticks separated by ", ", each either
`path::test_function` (a Python test) or a bare `path` (a promtool rule test, a molecule scenario whose
test_sequence runs converge and idempotence, a file a scenario runs). A test renamed, moved or deleted without
the README following fails here, naming the row and the entry.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
SECTION = "What is verified, and how"
HEADER = "| claim | how | tests |"
SEPARATOR = "|---|---|---|"
MIN_ROWS = 30
ENTRY = re.compile(r"`([^`]+)`")


def claims_table(text: str) -> list[tuple[str, str]]:
    """(claim, tests cell) of every row of the table under the section's heading, in order.

    Fails, saying what is missing, when the heading, the table's header or its separator is not there."""
    lines = text.splitlines()
    heading = next((i for i, line in enumerate(lines) if line.startswith("#") and SECTION in line), None)
    assert heading is not None, f"no heading containing {SECTION!r}"
    header = next((i for i in range(heading + 1, len(lines)) if lines[i].strip() == HEADER), None)
    assert header is not None, f"no table with header {HEADER!r} under {SECTION!r}"
    assert header + 1 < len(lines) and lines[header + 1].strip() == SEPARATOR, f"no {SEPARATOR!r} under {HEADER!r}"
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        body = line.strip()
        assert body.endswith("|"), f"row not closed by '|': {line[:60]!r}"
        claim = body[1:].split("|", 1)[0].strip()
        tests = body[:-1].rsplit("|", 1)[1].strip()
        rows.append((claim, tests))
    return rows


def entry_problems(claim: str, tests: str, root: Path) -> tuple[list[str], int]:
    """What is wrong with one row's tests cell, one line each, and how many entries were checked."""
    row = f"row {claim[:60]!r}"
    entries = ENTRY.findall(tests)
    if not entries:
        return [f"{row}: the tests cell names no test"], 0
    problems = []
    if tests != ", ".join(f"`{entry}`" for entry in entries):
        problems.append(f"{row}: the tests cell is not backticked entries separated by ', ': {tests!r}")
    for entry in entries:
        path, _, name = entry.partition("::")
        if Path(path).is_absolute() or ".." in Path(path).parts:
            problems.append(f"{row}: {entry!r} is not a path inside the repository")
            continue
        file = root / path
        if not file.is_file():
            problems.append(f"{row}: {entry!r}: {path} does not exist")
            continue
        if not name:
            if file.suffix == ".py":
                problems.append(f"{row}: {entry!r}: a Python file is named without the test function (path::name)")
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(f"{row}: {entry!r}: {name!r} is not a function name")
        elif not re.search(rf"^\s*(async\s+)?def {re.escape(name)}\(", file.read_text(), re.M):
            problems.append(f"{row}: {entry!r}: {path} defines no function {name}")
    return problems, len(entries)


def table_problems(text: str, root: Path) -> tuple[list[str], int, int]:
    """Every problem of the table in `text` against the files under `root`; the rows and entries checked."""
    rows = claims_table(text)
    problems, checked = [], 0
    for claim, tests in rows:
        found, count = entry_problems(claim, tests, root)
        problems += found
        checked += count
    return problems, len(rows), checked


def test_the_table_is_found_with_a_tests_cell_on_every_row():
    rows = claims_table(README.read_text())
    assert len(rows) >= MIN_ROWS, f"{len(rows)} rows under {SECTION!r}, expected at least {MIN_ROWS}"
    empty = [claim[:60] for claim, tests in rows if not ENTRY.findall(tests)]
    assert not empty, f"rows naming no test: {empty}"


def test_every_test_the_table_names_exists():
    problems, rows, checked = table_problems(README.read_text(), REPO_ROOT)
    assert not problems, "\n".join(problems)
    # Not vacuous: every row contributed at least one entry that was looked up.
    assert checked >= rows >= MIN_ROWS, f"{checked} entries checked for {rows} rows"


def test_a_renamed_test_a_missing_file_and_an_empty_cell_are_each_reported():
    """The checks above can fail: the real README with one function renamed, one path broken and one row's
    tests cell emptied gives one problem each, naming the row and the entry."""
    text = README.read_text()
    rows = claims_table(text)
    lines = text.splitlines()
    where = {claim: next(i for i, line in enumerate(lines) if line.startswith(f"| {claim} |")) for claim, _ in rows}
    (first, first_tests), (second, second_tests) = [row for row in rows if "::" in row[1]][:2]
    emptied = rows[-1][0]
    assert emptied not in (first, second), "the table is too short to alter three different rows"
    renamed = next(entry for entry in ENTRY.findall(first_tests) if "::" in entry)
    moved = next(entry for entry in ENTRY.findall(second_tests) if "::" in entry)
    wrong_name, wrong_path = renamed + "_renamed", moved.replace(".py::", "_moved.py::", 1)
    lines[where[first]] = lines[where[first]].replace(f"`{renamed}`", f"`{wrong_name}`")
    lines[where[second]] = lines[where[second]].replace(f"`{moved}`", f"`{wrong_path}`")
    lines[where[emptied]] = lines[where[emptied]].rsplit("|", 2)[0] + "|  |"

    problems, row_count, checked = table_problems("\n".join(lines), REPO_ROOT)
    assert row_count == len(rows)
    assert checked < sum(len(ENTRY.findall(tests)) for _claim, tests in rows), "the emptied row was still counted"
    assert len(problems) == 3, "\n".join(problems)
    renamed_problem, moved_problem, empty_problem = (
        next(problem for problem in problems if marker in problem)
        for marker in (wrong_name, wrong_path, "names no test"))
    assert repr(first[:60]) in renamed_problem and f"defines no function {wrong_name.split('::')[1]}" in renamed_problem
    assert repr(second[:60]) in moved_problem and "does not exist" in moved_problem
    assert repr(emptied[:60]) in empty_problem


def test_a_table_that_is_missing_or_badly_written_is_refused(tmp_path):
    table = f"## {SECTION}\n\n{HEADER}\n{SEPARATOR}\n"
    for text, complaint in (("# Nothing here\n", "no heading"),
                            (f"## {SECTION}\n\n| claim | how |\n|---|---|\n", "no table with header"),
                            (f"## {SECTION}\n\n{HEADER}\n|---|---|\n", "no '|---|---|---|'")):
        with pytest.raises(AssertionError, match=re.escape(complaint)):
            claims_table(text)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("async def test_x():\n    pass\n")
    (tmp_path / "tests" / "x.test.yml").write_text("tests: []\n")
    good = table + "| a claim | how | `tests/test_x.py::test_x`, `tests/x.test.yml` |\n"
    assert table_problems(good, tmp_path) == ([], 1, 2)
    for cell, complaint in (("`tests/test_x.py`", "without the test function"),
                            ("`/etc/passwd`", "not a path inside the repository"),
                            ("`tests/test_x.py::test_x` and more", "not backticked entries"),
                            ("`tests/test_x.py::test_x(`", "is not a function name")):
        problems, _rows, _checked = table_problems(table + f"| a claim | how | {cell} |\n", tmp_path)
        assert len(problems) == 1 and complaint in problems[0], (cell, problems)
