"""Every `dagster …`, `dg …` and `spot-pipelines …` command in the README's code blocks exists as
typed: its subcommand path, every option it passes (checked against the real CLI's `--help`), and
the run-config files it names."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOLS = ("dagster", "dg", "spot-pipelines")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
# `-c/--config FILE`: the option takes the file as its value.
FILE_OPTIONS = ("-c", "--config")


def readme_commands(text: str) -> list[list[str]]:
    """The tool invocations in fenced code blocks: `\\` continuations (and quotes spanning lines)
    joined, comments, `export` lines and anything after a shell separator dropped."""
    commands = []
    for block in FENCE.findall(text):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(pending + line, comments=True)
            except ValueError:  # a quote left open: the command goes on on the next line
                pending += line + "\n"
                continue
            pending = ""
            if not words or words[0] == "export":
                continue
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value cmd …
                words = words[1:]
            for separator in ("|", "<", ">", "&&", ";"):
                if separator in words:
                    words = words[: words.index(separator)]
            if words and Path(words[0]).name in TOOLS:
                commands.append([Path(words[0]).name, *words[1:]])
    return commands


def words_before_options(command: list[str]) -> tuple[str, ...]:
    """The subcommand path and positional arguments: what `--help` is asked of."""
    words = [command[0]]
    for word in command[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return tuple(words)


@cache
def help_text(words: tuple[str, ...]) -> tuple[bool, str]:
    """(ok, the help) of the subcommand `words` name; click reads the path and, for --help,
    ignores positional arguments after it. (False, the error) for an unknown subcommand."""
    result = subprocess.run(
        [str(BIN / words[0]), *words[1:], "--help"], capture_output=True, text=True, cwd=REPO, timeout=180
    )
    if result.returncode != 0:
        return False, (result.stderr.strip().splitlines() or ["no output"])[-1]
    return True, result.stdout


def usage_path(help_output: str) -> tuple[str, ...]:
    """The subcommand path in click's `Usage: tool sub sub [OPTIONS] ARGS` line."""
    line = next(line for line in help_output.splitlines() if line.startswith("Usage: "))
    return tuple(itertools.takewhile(lambda w: w.islower() and not w.startswith("["), line.split()[1:]))


def prefetch_help(commands: list[list[str]]) -> None:
    """Fill help_text's cache in parallel: each `dagster … --help` takes seconds."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(help_text, sorted({words_before_options(c) for c in commands})))


def problems(command: list[str]) -> list[str]:
    """What is wrong with one README command: an unknown subcommand, option or missing file."""
    ok, usage = help_text(words_before_options(command))
    if not ok:
        return [f"`{' '.join(words_before_options(command))}`: {usage}"]
    path = usage_path(usage)
    where = " ".join((command[0], *path[1:]))
    if "COMMAND" in next(line for line in usage.splitlines() if line.startswith("Usage: ")):
        return [f"`{where}` needs a subcommand"]
    words = command[len(path) :]
    found = []
    for i, word in enumerate(words):
        option = word.split("=", 1)[0]
        if option.startswith("-") and not re.search(rf"(^|[\s,]){re.escape(option)}([\s,=]|$)", usage, re.M):
            found.append(f"`{where}` has no option {option}")
        if option in FILE_OPTIONS and i + 1 < len(words) and not (REPO / words[i + 1]).is_file():
            found.append(f"`{where} {option} {words[i + 1]}`: no such file in the repository")
    return found


def test_the_parser_finds_continued_commands_and_skips_comments_and_exports():
    text = (
        "```bash\nexport X=$(dagster --nope)\n# dagster --also-nope\n"
        ".venv/bin/dagster job execute -m m \\\n    -c a.yaml  # trailing\n"
        "DAGSTER_HOME=/x dg list defs\nls\n```\n"
    )
    assert readme_commands(text) == [["dagster", "job", "execute", "-m", "m", "-c", "a.yaml"], ["dg", "list", "defs"]]


def test_a_made_up_option_subcommand_or_file_is_caught():
    assert problems(["dagster", "job", "execute", "-j", "x", "--config-json", "{}"]) == [
        "`dagster job execute` has no option --config-json"
    ]
    assert problems(["spot-pipelines", "accounts", "frobnicate"]) == [
        "`spot-pipelines accounts frobnicate`: Error: No such command 'frobnicate'."
    ]
    assert problems(["spot-pipelines", "accounts"]) == ["`spot-pipelines accounts` needs a subcommand"]
    # A positional argument is not a subcommand; the options after it are still checked.
    assert problems(["spot-pipelines", "accounts", "add", "payments-prod", "--aws-account-id", "1", "--role"]) == [
        "`spot-pipelines accounts add` has no option --role"
    ]
    assert problems(["dagster", "job", "execute", "-c", "examples/missing.yaml"]) == [
        "`dagster job execute -c examples/missing.yaml`: no such file in the repository"
    ]


COMMANDS = readme_commands((REPO / "README.md").read_text())


@pytest.fixture(scope="module", autouse=True)
def _help_cache():
    prefetch_help(COMMANDS)


def test_the_readme_documents_the_workbench_commands():
    tools = {c[0] for c in COMMANDS}
    assert {"dagster", "spot-pipelines"} <= tools
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:3]) for c in COMMANDS])
def test_readme_command_exists_as_typed(command):
    assert problems(command) == [], " ".join(command)
