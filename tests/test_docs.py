"""The documentation names only what exists: every `parcae-runner ...` command shown in README.md and docs/*.md (code
blocks and inline code) parses with the real command line, its config overrides compose (`show` for train-like
commands, `plan` for sweeps), its documented errors are the errors it gives, every `make <target>` is a target of the
Makefile, and every repository path and relative link points at a file.

Rules for what a reader fills in: a command with a placeholder (`<run>`, `RUN_DIR`, `WORD…`) or an elision (`...`) is
checked by its parse only; an override whose value is a run the reader made earlier (`results/...`) or a path of their
own (`/path/to/...`) is composed without the checks that need the path to exist; sweeps are planned with their data
taken as available (the full grids read corpora from the Hugging Face cache, which tests never download).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250
# how a command is spelled in the docs: the installed script, or the one in .venv/bin
PROGRAM = re.compile(r"^(?:\S*/)?parcae-runner$")
FENCE = re.compile(r"^```.*?$(.*?)^```\s*$", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
ELISIONS = {"...", "…"}
# a placeholder: <anything>, an all-capitals word (RUN_DIR, WORD…, ARGS...), or a word ending in an ellipsis
PLACEHOLDER = re.compile(r"<[^>]*>|^[A-Z][A-Z_]+(?:…|\.\.\.)?$|\w(?:…|\.\.\.)$")
USER_PATHS = ("results/", "/path/to/", "/tmp/")
TRAIN_LIKE = {"train", "prepare", "show", "launch"}
SWEEP_LIKE = {"plan", "sweep"}
ERROR_PREFIX = "parcae-runner: error: "
# a file or folder of the repository named in inline code (what a command writes is not there yet)
REPO_PATH = re.compile(r"`((?:tests|parcae_runner|bench|docker|launch_configs|sweeps|slurm|\.ci)/[^`\s]*)`")
WRITTEN_BY_COMMANDS = ("bench/out/", "bench/results/gpu-")


@dataclass(frozen=True)
class Command:
    page: str
    args: tuple[str, ...]
    # the error line the docs show under the command, if any (a command documented to fail)
    expected_error: str | None = None
    # the line has a <placeholder>, which may span words (`<data overrides>`)
    angle_placeholder: bool = False

    @property
    def id(self) -> str:
        return f"{self.page}: parcae-runner {' '.join(self.args)}"

    @property
    def has_placeholder(self) -> bool:
        return self.angle_placeholder or any(a in ELISIONS or PLACEHOLDER.search(a) for a in self.args)


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def _command_words(words: list[str]) -> list[str]:
    """The words from the program on: leading `$`, `sudo` and `VAR=value` assignments dropped."""
    while words and (words[0] in ("$", "sudo") or re.match(r"^[A-Z_][A-Z0-9_]*=", words[0])):
        words = words[1:]
    return words


def _code_lines(text: str) -> list[str]:
    """Code block lines (backslash continuations joined), then inline code spans of the prose."""
    lines = []
    for block in FENCE.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    prose = FENCE.sub("", text)
    lines += [" ".join(span.split()) for span in INLINE.findall(prose)]
    return lines


def _commands(page: Path) -> list[Command]:
    name = str(page.relative_to(REPO))
    lines = _code_lines(page.read_text())
    found: list[Command] = []
    for i, line in enumerate(lines):
        words = _command_words(_words(line.strip()))
        # the program's bare name in prose is not a command
        if len(words) > 1 and PROGRAM.match(words[0]):
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            expected = nxt[len(ERROR_PREFIX) :] if nxt.startswith(ERROR_PREFIX) else None
            command = Command(name, tuple(words[1:]), expected, bool(re.search(r"<[^>]*>", line)))
            if command not in found:
                found.append(command)
    return found


def _make_targets(page: Path) -> list[tuple[str, str]]:
    name = str(page.relative_to(REPO))
    targets = []
    for line in _code_lines(page.read_text()):
        words = _command_words(_words(line.strip()))
        if words[:1] == ["make"]:
            targets += [(name, w) for w in words[1:] if "=" not in w and not w.startswith("-")]
    return sorted(set(targets))


COMMANDS = [c for page in PAGES for c in _commands(page)]
MAKE_TARGETS = [t for page in PAGES for t in _make_targets(page)]


def _run(argv: list[str]) -> tuple[int, str, str]:
    from parcae_runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def _parse(args: list[str]):
    """Parse as `parcae-runner` does (options and overrides in any order); fails on an unknown subcommand or flag."""
    from parcae_runner.cli import build_parser

    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            ns, rest = build_parser().parse_known_args(args)
        except SystemExit:
            pytest.fail(f"does not parse: {err.getvalue().strip()}")
    unknown = [r for r in rest if r.startswith("-")] if hasattr(ns, "overrides") else rest
    if ns.command != "lm-eval":
        assert not unknown, f"unknown arguments: {unknown}"
    return ns, rest


def _parse_lm_eval(args: list[str]) -> None:
    """lm-eval's own parser on the arguments `parcae-runner lm-eval` hands it."""
    from lm_eval._cli import HarnessCLI

    from parcae_runner.eval.lm_eval_cli import lm_eval_argv

    cli = HarnessCLI()
    argv = lm_eval_argv(args)
    if argv and argv[0] not in cli._subparsers.choices:
        argv = ["run", *argv]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            cli._parser.parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"lm-eval does not take it: {err.getvalue().strip()}"


def _compose_only(ns) -> None:
    from parcae_runner.config import compose_run_config
    from parcae_runner.config.presets import resolve_config_arg

    compose_run_config(list(ns.overrides), config_name=resolve_config_arg(ns.config_name))


@pytest.fixture
def plan_with_data_available(monkeypatch):
    """`plan` with every corpus taken as prepared and large: what the docs can get wrong is the config, not the
    contents of this machine's Hugging Face cache."""
    from parcae_runner.data.budget import Availability
    from parcae_runner.train import preflight

    def available(cfg, seen):
        vocab = int(cfg.data.vocab_size or 50304)
        return Availability(tokens=10**15, model_vocab_size=vocab, estimate=True, description="(docs test)")

    monkeypatch.setattr(preflight, "data_availability", available)


def test_the_docs_show_commands():
    assert len(COMMANDS) > 40, [c.id for c in COMMANDS]
    assert {c.args[0] for c in COMMANDS} >= {"train", "show", "plan", "sweep", "eval", "lm-eval", "export"}
    assert len([c for c in COMMANDS if c.expected_error]) >= 3


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.id)
def test_command_exists_with_its_flags_and_config(command: Command, plan_with_data_available) -> None:
    args = [a for a in command.args if a not in ELISIONS]
    for path in (a for a in args if a.endswith((".yaml", ".yml")) and not PLACEHOLDER.search(a)):
        assert (REPO / path).is_file(), f"{path} does not exist"
    ns, _ = _parse(args)
    if ns.command == "lm-eval":
        if not command.has_placeholder:
            _parse_lm_eval(args[1:])
        return
    if command.has_placeholder:
        return
    if ns.command in TRAIN_LIKE:
        if any(o.split("=", 1)[-1].startswith(USER_PATHS) for o in ns.overrides):
            _compose_only(ns)
            return
        rc, _, err = _run(["show", "--config-name", ns.config_name, *ns.overrides])
    elif ns.command in SWEEP_LIKE:
        variant = ["--variant", ns.variant] if ns.variant else []
        rc, _, err = _run(["plan", ns.sweep_file, *variant, *ns.overrides])
    else:
        return
    if command.expected_error is not None:
        assert rc == 2, err
        shown = command.expected_error.split("…")[0].rstrip(", ")
        assert err.strip().splitlines()[-1].startswith(ERROR_PREFIX + shown), err
    else:
        assert rc == 0, err[-2000:]


def _makefile_targets() -> tuple[set[str], list[str]]:
    targets: set[str] = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9%._-]+(?:\s+[A-Za-z0-9%._-]+)*)\s*:(?![=])", line)
        if m:
            targets.update(m.group(1).split())
    patterns = [t for t in targets if "%" in t]
    return targets - set(patterns), patterns


@pytest.mark.parametrize(("page", "target"), MAKE_TARGETS, ids=[f"{p}: make {t}" for p, t in MAKE_TARGETS])
def test_make_target_exists(page: str, target: str) -> None:
    explicit, patterns = _makefile_targets()
    if target in explicit:
        return
    for pattern in patterns:
        prefix, suffix = pattern.split("%")
        if target.startswith(prefix) and target.endswith(suffix):
            # the study pattern rules: sweep-<study> and plan-<study> read sweeps/<study>.yaml
            stem = target[len(prefix) : len(target) - len(suffix)]
            assert (REPO / "sweeps" / f"{stem}.yaml").is_file(), f"make {target}: no sweeps/{stem}.yaml"
            return
    pytest.fail(f"make {target}: not a target of the Makefile")


def test_readme_names_the_test_command_and_stays_short() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert len(readme.splitlines()) <= README_MAX_LINES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_repository_paths_exist(page: Path) -> None:
    for path in REPO_PATH.findall(page.read_text()):
        path = path.rstrip(".,:;")
        if path.startswith(WRITTEN_BY_COMMANDS):
            continue
        pattern = re.sub(r"<[^>]*>", "*", path)
        assert list(REPO.glob(pattern)) if "*" in pattern else (REPO / path).exists(), f"{page.name}: {path}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name}: link to {target}"
