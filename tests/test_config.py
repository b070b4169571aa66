"""`routemail check`: every mistake in lists.toml named by line and key, all at once."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from routemail.cli import cli
from tests.conftest import ROOT, example_site

GOOD = """\
[site]
domain = "lists.example.org"
admin = "admin@example.org"

[lists.volunteers]
members = ["ann@example.com", "Bob <bob@Example.NET>"]
moderators = ["coordinator@example.org"]
footer = "You are on {list} as {recipient}. Leave: {unsubscribe_url}"

[[dynamic]]
pattern = 'role-(?P<role>[0-9]+)(?P<filters>(?:[-+][a-z]+)*)'
resolver = "sqlite"
database = "serv.sqlite3"
members = "SELECT email FROM people p WHERE p.role = :role AND {filters}"
[dynamic.filters]
cardkey = "p.cardkey IS NOT NULL"
"""


def check(path: Path) -> Result:
    return CliRunner().invoke(cli, ["--config", str(path), "check"])


def write(tmp_path: Path, text: str) -> Path:
    """lists.toml in tmp_path, beside a small serv.sqlite3 that GOOD's queries compile against."""
    path = tmp_path / "lists.toml"
    path.write_text(text)
    with closing(sqlite3.connect(tmp_path / "serv.sqlite3")) as db:
        db.execute("CREATE TABLE IF NOT EXISTS people (email, role, cardkey)")
    return path


def errors(result: Result) -> list[str]:
    """The error lines of a failed check, in the order reported."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    return [line.removeprefix("error: ") for line in lines]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the occurrence-th needle."""
    numbers = [n for n, line in enumerate(text.split("\n"), start=1) if needle in line]
    return numbers[occurrence - 1]


def test_good_file_passes(tmp_path: Path) -> None:
    """A correct file is reported ok with its counts and exit status 0."""
    path = write(tmp_path, GOOD)
    result = check(path)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok: 1 list, 1 dynamic pattern, transport outbox\n"


def test_shipped_example_configuration_passes(tmp_path: Path) -> None:
    """examples/lists.toml, with its dynamic families, passes check."""
    result = check(example_site(tmp_path))
    assert result.exit_code == 0, result.output
    assert ": ok: 2 lists, 4 dynamic patterns" in result.stdout


def test_top_level_lists_toml_is_a_starting_point(tmp_path: Path) -> None:
    """The lists.toml people edit passes check and has no live lists or dynamic families."""
    shutil.copy(ROOT / "lists.toml", tmp_path / "lists.toml")
    result = check(tmp_path / "lists.toml")
    assert result.exit_code == 0, result.output
    assert ": ok: 0 lists, 0 dynamic patterns" in result.stdout


def test_unknown_keys_everywhere_reported_at_their_lines(tmp_path: Path) -> None:
    """Unknown keys at top level, in a list and in [[dynamic]] each name their own line."""
    text = 'colour = "blue"\n' + GOOD.replace(
        'admin = "admin@example.org"\n', 'admin = "admin@example.org"\nadmn = 1\n'
    ).replace("[lists.volunteers]\n", "[lists.volunteers]\nmembrs = []\n").replace(
        'resolver = "sqlite"\n', 'resolver = "sqlite"\nquery = "SELECT 1"\n'
    )
    problems = errors(check(write(tmp_path, text)))
    assert len(problems) == 4, problems
    expected = {
        "colour": line_of(text, "colour ="),
        "site.admn": line_of(text, "admn ="),
        "lists.volunteers.membrs": line_of(text, "membrs ="),
        "dynamic[0].query": line_of(text, "query ="),
    }
    for problem, (key, line) in zip(problems, expected.items(), strict=False):
        assert problem.startswith(f"lists.toml line {line}: {key}: unknown key; expected one of ")
    assert {p.split(": ")[1] for p in problems} == set(expected)


def test_bad_regex_names_the_pattern_line(tmp_path: Path) -> None:
    """A pattern that is not a regular expression is reported with re's reason."""
    text = GOOD.replace(
        "pattern = 'role-(?P<role>[0-9]+)(?P<filters>(?:[-+][a-z]+)*)'",
        "pattern = 'role-(?P<role>[0-9]+'",
    )
    problems = errors(check(write(tmp_path, text)))
    line = line_of(text, "pattern =")
    assert problems == [
        f"lists.toml line {line}: dynamic[0].pattern: bad regular expression: "
        "missing ), unterminated subpattern at position 5"
    ]


def test_pattern_shadowing_a_named_list(tmp_path: Path) -> None:
    """A dynamic pattern that matches a named list's whole name would hide it: reported."""
    text = GOOD + (
        "\n[[dynamic]]\n"
        "pattern = '(?P<team>[a-z]+)'\n"
        'resolver = "http"\n'
        'url = "https://people.example.org/teams/{team}"\n'
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'pattern =', 2)}: dynamic[1].pattern: matches the "
        "named list 'volunteers', which would hide it; narrow the pattern"
    ]


@pytest.mark.parametrize(
    ("posters", "message"),
    [
        ('"everyone"', "expected members, moderators, anyone or a list of addresses"),
        ("3", "expected members, moderators, anyone or a list of addresses"),
        ('["ann@example.com", "not an address"]', "'not an address' is not an email address"),
    ],
)
def test_bad_posters(tmp_path: Path, posters: str, message: str) -> None:
    """A posting policy that is not a policy or not all addresses is named at its line."""
    text = GOOD.replace("[lists.volunteers]\n", f"[lists.volunteers]\nposters = {posters}\n")
    problems = errors(check(write(tmp_path, text)))
    line = line_of(text, "posters =")
    assert problems == [f"lists.toml line {line}: lists.volunteers.posters: {message}"]


def test_bad_addresses_in_several_places(tmp_path: Path) -> None:
    """Bad addresses in site.admin, members and moderators are all reported at once."""
    text = (
        GOOD.replace('admin = "admin@example.org"', 'admin = "the admin"')
        .replace('"Bob <bob@Example.NET>"', '"bob@"')
        .replace(
            'moderators = ["coordinator@example.org"]', 'moderators = ["coordinator.example.org"]'
        )
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'admin =')}: site.admin: "
        "'the admin' is not an email address",
        f"lists.toml line {line_of(text, 'members =')}: lists.volunteers.members: "
        "'bob@' is not an email address",
        f"lists.toml line {line_of(text, 'moderators =')}: lists.volunteers.moderators: "
        "'coordinator.example.org' is not an email address",
    ]


def test_bad_template_placeholders(tmp_path: Path) -> None:
    """Unknown placeholders and unbalanced braces in header and footer are reported."""
    text = GOOD.replace(
        'footer = "You are on {list} as {recipient}. Leave: {unsubscribe_url}"',
        'header = "Hello {name}"\nfooter = "Leave: {unsubscribe_url"',
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'header =')}: lists.volunteers.header: unknown "
        "placeholder {name}; expected one of {list}, {list_address}, {description}, "
        "{recipient}, {unsubscribe_url}, {site}",
        f"lists.toml line {line_of(text, 'footer =')}: lists.volunteers.footer: bad template "
        "(expected '}' before end of string); write a literal brace as {{ or }}",
    ]


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    """A file that is not TOML is reported with the line of the mistake, not a traceback."""
    text = GOOD.replace('domain = "lists.example.org"', 'domain = "lists.example.org')
    problems = errors(check(write(tmp_path, text)))
    assert len(problems) == 1
    assert problems[0].startswith(f"lists.toml line {line_of(text, 'domain =')}: not valid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    """A missing configuration file is one clear line and exit status 2."""
    path = tmp_path / "nowhere" / "lists.toml"
    assert errors(check(path)) == [
        f"{path}: no such file; set ROUTEMAIL_CONFIG or run from the directory holding lists.toml"
    ]


def test_multiline_strings_and_arrays_do_not_confuse_line_numbers(tmp_path: Path) -> None:
    """Text inside multi-line strings and arrays that looks like a table or key is skipped."""
    text = GOOD.replace(
        'footer = "You are on {list} as {recipient}. Leave: {unsubscribe_url}"',
        'footer = """\n[volunteers] mailing list\nposters = written here is just text\n"""\n'
        "members_note = [\n  [1, 2],\n]\n"
        'posters = "nobody"',
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'members_note')}: lists.volunteers.members_note: "
        "unknown key; expected one of archive, bcc, description, footer, header, members, "
        "moderators, posters, reply_to, subject_prefix",
        f"lists.toml line {line_of(text, 'posters = ', 2)}: lists.volunteers.posters: "
        "expected members, moderators, anyone or a list of addresses",
    ]


def test_subtable_of_a_dynamic_entry_is_located(tmp_path: Path) -> None:
    """A mistake in [dynamic.filters] names the line in that table of the right entry."""
    text = (
        GOOD
        + "\n[[dynamic]]\n"
        + "pattern = 'class-(?P<id>[0-9]+)(?P<filters>(?:[-+][a-z]+)*)'\n"
        + 'resolver = "sqlite"\n'
        + 'database = "serv.sqlite3"\n'
        + 'members = "SELECT email FROM people p WHERE p.class = :id AND {filters}"\n'
        + "[dynamic.filters]\n"
        + 'paid = "p.paid"\n'
        + '"not-a-name" = "p.x"\n'
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'not-a-name')}: dynamic[1].filters.not-a-name: "
        "criterion names are a letter then letters, digits or _"
    ]


def test_dynamic_entry_mistakes_all_reported(tmp_path: Path) -> None:
    """SQL parameters, templates and timeouts are checked against the pattern's groups."""
    text = GOOD + (
        "\n[[dynamic]]\n"
        "pattern = 'team-(?P<team>[a-z]+)'\n"
        'resolver = "command"\n'
        'command = ["./lookup", "{teem}"]\n'
        "timeout = -1\n"
        "\n[[dynamic]]\n"
        "pattern = 'event-(?P<id>[0-9]+)'\n"
        'resolver = "sqlite"\n'
        'database = "serv.sqlite3"\n'
        'members = "SELECT email FROM people WHERE event = :event"\n'
        "\n[[dynamic]]\n"
        "pattern = 'x-(?P<x>[0-9]+)(?P<filters>(?:[-+][a-z]+)*)'\n"
        'resolver = "sqlite"\n'
        'database = "serv.sqlite3"\n'
        'members = "SELECT email FROM people WHERE x = :x"\n'
        "filters = { a = '1=1', A = '1=0' }\n"
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'timeout =')}: dynamic[1].timeout: "
        "expected a positive number of seconds",
        f"lists.toml line {line_of(text, 'command =')}: dynamic[1].command: "
        "{teem} is not a named group of the pattern",
        f"lists.toml line {line_of(text, ':event')}: dynamic[2].members: "
        "parameter :event is not a named group of the pattern",
        f"lists.toml line {line_of(text, 'WHERE x = :x')}: dynamic[3].members: "
        "the pattern captures criteria but the query has no {filters}",
        f"lists.toml line {line_of(text, 'filters = {')}: dynamic[3].filters.A: "
        "same as 'a': criteria are matched ignoring case",
    ]


def test_example_database_builds_from_the_shipped_sql(tmp_path: Path) -> None:
    """examples/serv.sql builds a database whose every table has rows (the documented step)."""
    with sqlite3.connect(tmp_path / "serv.sqlite3") as db:
        db.executescript((ROOT / "examples" / "serv.sql").read_text())
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    db.close()
    assert set(counts) >= {"people", "orgs", "org_leaders", "roles", "person_role", "tasks"}
    assert all(counts.values()), counts
    assert 15 <= counts["people"] <= 30


def test_docs_cover_every_key_the_validator_accepts() -> None:
    """docs/configuration.md mentions every key name that the validator accepts."""
    source = "".join(p.read_text() for p in (ROOT / "routemail" / "validation").glob("*.py"))
    doc = (ROOT / "docs" / "configuration.md").read_text()
    allowed = set()
    # Every set literal of quoted names: the keys unknown_keys allows, inline or as constants.
    for block in re.findall(r'\{(\s*"[a-z_]+"(?:,\s*"[a-z_]+")*,?\s*)\}', source):
        allowed |= set(re.findall(r'"([a-z_]+)"', block))
    assert {"domain", "on_receipt", "password_env", "subject_prefix", "pattern"} <= allowed
    from routemail.resolvers import OPTION_KEYS

    for keys in OPTION_KEYS.values():
        allowed |= keys
    spellings = ("`{}`", "{} =", "[{}]", "[{}.", ".{}]")
    missing = sorted(k for k in allowed if not any(s.format(k) in doc for s in spellings))
    assert not missing, f"undocumented keys: {missing}"


def test_bad_member_in_a_long_array_is_reported_at_its_own_line(tmp_path: Path) -> None:
    """A bad address on the third line of a multi-line members array names that line,
    not the line where the array starts; so does a bad poster address."""
    text = GOOD.replace(
        'members = ["ann@example.com", "Bob <bob@Example.NET>"]',
        'members = [\n    "ann@example.com",  # first\n    # a comment, [not a table]\n'
        '    "Bob <bob@Example.NET>", "cy@example.org",\n    "not an address",\n]\n'
        'posters = [\n  "ann@example.com",\n  "eve at example.com",\n]',
    )
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'not an address')}: lists.volunteers.members: "
        "'not an address' is not an email address",
        f"lists.toml line {line_of(text, 'eve at')}: lists.volunteers.posters: "
        "'eve at example.com' is not an email address",
    ]


# -- what `check` tries beyond the file ---------------------------------------------


def check_json(path: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--config", str(path), "check", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_missing_database_is_reported_and_not_created(tmp_path: Path) -> None:
    """A dynamic list whose database is not there fails check at its database line,
    and checking does not leave an empty database behind."""
    text = GOOD.replace('database = "serv.sqlite3"', 'database = "data/srv.sqlite3"')
    problems = errors(check(write(tmp_path, text)))
    missing = tmp_path / "data" / "srv.sqlite3"
    assert problems == [
        f"lists.toml line {line_of(text, 'database =')}: dynamic[0].database: "
        f"{missing} does not exist; build it or correct the path"
    ]
    assert not missing.parent.exists()


def test_a_directory_named_as_the_database_is_reported(tmp_path: Path) -> None:
    """A database path naming a directory fails check with that, not "does not exist"."""
    text = GOOD.replace('database = "serv.sqlite3"', 'database = "."')
    problems = errors(check(write(tmp_path, text)))
    assert problems == [
        f"lists.toml line {line_of(text, 'database =')}: dynamic[0].database: "
        f"{tmp_path} is not a file; name the database file itself"
    ]


def test_a_file_that_is_no_database_is_reported(tmp_path: Path) -> None:
    """A database path naming some other file fails check, naming the file."""
    path = write(tmp_path, GOOD)
    (tmp_path / "serv.sqlite3").write_bytes(b"id,email\n1,ann@example.com\n" * 200)
    problems = errors(check(path))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"lists.toml line {line_of(GOOD, 'database =')}: dynamic[0].database: "
        f"{tmp_path / 'serv.sqlite3'} cannot be opened read-only: "
    )


def test_queries_and_filters_that_do_not_compile_are_reported(tmp_path: Path) -> None:
    """Each query is prepared against the database (EXPLAIN): a missing column in a query,
    and one in a filter condition, each fail check at the query's line; nothing is written."""
    text = GOOD.replace(
        'members = "SELECT email FROM people p WHERE p.role = :role AND {filters}"',
        'members = "SELECT email FROM people p WHERE p.role = :role AND {filters}"\n'
        'bcc = """\nSELECT p.mail FROM people p\nWHERE p.role = :role"""\n'
        'exists = "SELECT 1 FROM roles WHERE id = :role"',
    ).replace('cardkey = "p.cardkey IS NOT NULL"', 'cardkey = "p.card_key IS NOT NULL"')
    path = write(tmp_path, text)
    before = (tmp_path / "serv.sqlite3").read_bytes()
    problems = errors(check(path))
    db = tmp_path / "serv.sqlite3"
    assert problems == [
        f"lists.toml line {line_of(text, 'exists =')}: dynamic[0].exists: "
        f"does not compile against {db}: no such table: roles",
        f"lists.toml line {line_of(text, 'members =', 2)}: dynamic[0].members: "
        f"does not compile against {db}: no such column: p.card_key",
        f"lists.toml line {line_of(text, 'bcc =')}: dynamic[0].bcc: "
        f"does not compile against {db}: no such column: p.mail",
    ]
    assert db.read_bytes() == before


COMMAND_RULE = """
[[dynamic]]
pattern = 'team-(?P<team>[a-z]+)'
resolver = "command"
command = [{program}, "{{team}}"]
"""


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ('"./lookup"', "{dir}/lookup does not exist"),
        ('"./notes.txt"', "{dir}/notes.txt is not an executable file; chmod +x it"),
        ('"./"', "{dir} is not an executable file; chmod +x it"),
        ('"no-such-program-here"', "no-such-program-here is not found on PATH ("),
    ],
)
def test_lookup_program_must_exist_and_be_executable(
    tmp_path: Path, program: str, message: str
) -> None:
    """A command resolver's program that is missing, not executable or not on PATH fails
    check at the command's line."""
    (tmp_path / "notes.txt").write_text("#!/bin/sh\necho ann@example.com\n")
    text = GOOD + COMMAND_RULE.format(program=program)
    problems = errors(check(write(tmp_path, text)))
    assert len(problems) == 1
    expected = message.format(dir=tmp_path).replace(f"{tmp_path}/ ", f"{tmp_path} ")
    assert problems[0].startswith(
        f"lists.toml line {line_of(text, 'command =')}: dynamic[1].command: {expected}"
    ), problems


def test_executable_lookup_program_and_program_on_path_pass(tmp_path: Path) -> None:
    """An executable program beside lists.toml, or one found on PATH, passes check."""
    lookup = tmp_path / "lookup"
    lookup.write_text("#!/bin/sh\necho ann@example.com\n")
    lookup.chmod(0o755)
    for program in ('"./lookup"', '"true"', f'"{lookup}"'):
        result = check(write(tmp_path, GOOD + COMMAND_RULE.format(program=program)))
        assert result.exit_code == 0, (program, result.output)


HTTP_RULE = """
[[dynamic]]
pattern = 'team-(?P<team>[a-z]+)'
resolver = "http"
url = "{url}"
"""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://{team}.example.org/members",
            "the host cannot come from the list name; put {fields} in the path or query",
        ),
        ("https://people.example.org:80x/{team}", "bad port: "),
        ("https:///teams/{team}", "no host name after the scheme"),
        (
            "https://people.example.org/teams/{team} members",
            "contains spaces or control characters; write them %-encoded",
        ),
        ("ftp://people.example.org/{team}", "expected an http(s) URL template, e.g. "),
        ("https://people.example.org/{team", "bad template: "),
    ],
)
def test_http_url_template_must_be_well_formed(tmp_path: Path, url: str, message: str) -> None:
    """An http resolver's URL template that would not make a usable request fails check."""
    text = GOOD + HTTP_RULE.format(url=url)
    problems = errors(check(write(tmp_path, text)))
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        f"lists.toml line {line_of(text, 'url =')}: dynamic[1].url: {message}"
    ), problems


def test_check_json_gives_problems_as_objects(tmp_path: Path) -> None:
    """`check --json` answers problems as objects with file, line, key and message, and an
    empty problems list when the file is good."""
    text = GOOD.replace('admin = "admin@example.org"', 'admin = "the admin"').replace(
        'database = "serv.sqlite3"', 'database = "gone.sqlite3"'
    )
    status, answer = check_json(write(tmp_path, text))
    assert status == 2
    assert answer == {
        "ok": False,
        "problems": [
            {
                "file": "lists.toml",
                "line": line_of(text, "admin ="),
                "key": "site.admin",
                "message": "'the admin' is not an email address",
            },
            {
                "file": "lists.toml",
                "line": line_of(text, "database ="),
                "key": "dynamic[0].database",
                "message": f"{tmp_path / 'gone.sqlite3'} does not exist; "
                "build it or correct the path",
            },
        ],
    }
    status, answer = check_json(write(tmp_path, GOOD))
    assert (status, answer) == (
        0,
        {"ok": True, "lists": 1, "dynamic": 1, "transport": "outbox", "problems": []},
    )


def test_check_json_for_a_missing_file_and_a_syntax_error(tmp_path: Path) -> None:
    """Problems without a key (no such file, not TOML) are objects too, key null."""
    status, answer = check_json(tmp_path / "nowhere.toml")
    assert status == 2
    assert answer["problems"] == [
        {
            "file": str(tmp_path / "nowhere.toml"),
            "line": None,
            "key": None,
            "message": "no such file; set ROUTEMAIL_CONFIG or run from the directory "
            "holding lists.toml",
        }
    ]
    status, answer = check_json(write(tmp_path, "[site\n"))
    assert status == 2
    [problem] = answer["problems"]
    assert (problem["line"], problem["key"]) == (1, None)
    assert problem["message"].startswith("not valid TOML: ")
