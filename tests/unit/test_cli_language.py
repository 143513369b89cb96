"""Every word the ``hub`` command line shows goes through the terminal's ``_`` (hub.uploads.terminal).

The project's rule is Chinese end to end: a school server's admin with ``LANG=zh_CN.UTF-8``
reads no English. This scan finds what the catalog check (test_i18n) cannot: a literal that
is never marked at all. It reads each CLI module's syntax tree for a string with words in it
passed straight to ``click.echo``, ``click.ClickException``, ``click.UsageError``,
``click.BadParameter``, ``click.prompt`` or a ``help=``, and for a command whose help would be
its docstring (Click shows a docstring untranslated).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hub

HUB = Path(hub.__file__).parent
SHOWN = {"echo", "ClickException", "UsageError", "BadParameter", "prompt", "secho", "confirm"}
WORD = re.compile(r"[A-Za-z]{2,}")

# Literals shown as they are, in every language, each with its reason: machine output or a
# command line to type. (file, the literal's text as the source has it.)
ALLOWED = {
    ("sync/cli.py", "  hub sync subscribe {paired}   # "): "a command to type; its comment is translated",
    ("sync/cli.py", "  hub sync pull                # "): "a command to type; its comment is translated",
    (
        "sync/cli.py",
        "  */30 * * * *  cd {Path.cwd()} && HUB_DATA_DIR={data_dir} {command} sync pull --window "
        "22:00-06:00 >>{data_dir}/sync.log 2>&1",
    ): "a crontab line to paste",
    ("sync/cli.py", "  hub serve --host 0.0.0.0 --port 80   # "): "a command to type; its comment is translated",
}

# Modules another change is translating: listed so this test checks everything else meanwhile,
# and fails once one of them is clean (then take it off the list). None today.
PENDING: set[str] = set()


def _text(node: ast.expr) -> str | None:
    """A literal's text (an f-string's with its {…} as written), or None for anything computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                assert isinstance(value, ast.FormattedValue)
                parts.append("{" + ast.unparse(value.value) + "}")
        return "".join(parts)
    return None


def _literals(node: ast.expr) -> list[ast.expr]:
    """The string literals an argument is made of: itself, or the operands of a ``+``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literals(node.left) + _literals(node.right)
    return [node] if _text(node) is not None else []


def _has_words(node: ast.expr) -> bool:
    text = _text(node) or ""
    if isinstance(node, ast.JoinedStr):  # only the literal parts count, not the names inside {…}
        text = "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
    return bool(WORD.search(text))


def _is_command(decorator: ast.expr) -> bool:
    call = decorator if isinstance(decorator, ast.Call) else None
    func = call.func if call else decorator
    return isinstance(func, ast.Attribute) and func.attr in ("command", "group")


def untranslated(source: str, name: str) -> list[str]:
    """``file:line: text`` of each literal shown untranslated, minus ALLOWED."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            arguments = [*node.args[:1]] if called in SHOWN else []
            arguments += [k.value for k in node.keywords if k.arg in ("help", "short_help", "message", "text")]
            for argument in arguments:
                for literal in _literals(argument):
                    if _has_words(literal) and (name, _text(literal)) not in ALLOWED:
                        found.append(f"{name}:{literal.lineno}: {_text(literal)!r}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            commands = [d for d in node.decorator_list if _is_command(d)]
            helped = any(isinstance(d, ast.Call) and any(k.arg == "help" for k in d.keywords) for d in commands)
            if commands and not helped and ast.get_docstring(node):
                found.append(f"{name}:{node.lineno}: {node.name}'s docstring is its help: pass help=_(...)")
    return found


def _cli_modules() -> dict[str, str]:
    """Every hub module that makes commands or prints to the terminal with click."""
    return {
        str(path.relative_to(HUB)): text
        for path in sorted(HUB.rglob("*.py"))
        if "import click" in (text := path.read_text(encoding="utf-8"))
    }


def test_every_word_the_command_line_shows_is_translated() -> None:
    modules = _cli_modules()
    assert {"cli.py", "sync/cli.py", "search/cli.py", "textbooks/cli.py", "sync/calendar_cli.py"} <= set(modules)
    found = [line for name, text in modules.items() if name not in PENDING for line in untranslated(text, name)]
    assert not found, "pass these through hub.uploads.terminal._ (and translate them in the .po):\n" + "\n".join(found)
    clean = sorted(name for name in PENDING & set(modules) if not untranslated(modules[name], name))
    assert not clean, f"{clean} no longer show untranslated text: take them off PENDING"


def test_the_scan_can_fail() -> None:
    source = '''
import click
from hub.uploads.terminal import _

@click.command(help=_("Fine."))
@click.option("--x", help="Raw help.")
def fine(x):
    click.echo(f"done: {x}")
    click.echo(_("done: %(x)s", x=x))
    click.echo(f"{x}\\t{x}")
    raise click.ClickException("it " + _("failed"))

@click.command()
def bare():
    """Shown untranslated."""
'''
    found = untranslated(source, "example.py")
    assert sorted(line.split(": ", 1)[1] for line in found) == [
        "'Raw help.'",
        "'done: {x}'",
        "'it '",
        "bare's docstring is its help: pass help=_(...)",
    ], found


def test_chinese_help_reads_the_catalog_without_the_web_app() -> None:
    """`hub --help` in Chinese reads the compiled catalog (hub.catalogs), not through Flask or Babel."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from hub.cli import main\n"
        "try:\n"
        "    main(['sync', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('flask', 'flask_babel', 'babel.support', 'hub.i18n') if m in sys.modules))\n"
    )
    env = {**os.environ, "LANG": "zh_CN.UTF-8", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    *help_lines, loaded = done.stdout.splitlines()
    assert "用法：" in "\n".join(help_lines), done.stdout  # the Chinese help, read from the catalog
    assert loaded == "[]", loaded
