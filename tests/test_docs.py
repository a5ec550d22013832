"""The documentation site: it builds with ``mkdocs build --strict`` (broken links, anchors and references
fail), its generated reference pages follow the code, and no page speaks of what only this project's
developers have. The tutorials' code blocks run in ``tests/test_tutorials.py``."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_hooks"))

import generated  # noqa: E402  (docs/_hooks/generated.py, the MkDocs hook)

pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') builds the site")


def mkdocs_env() -> dict[str, str]:
    """The environment of a build as a user runs it: no test cache in the option defaults, no banner."""
    env = {k: v for k, v in os.environ.items() if k != "ERNIE_CPT_CACHE"}
    return {**env, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}


def build(config: Path, site: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = mkdocs_env()
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env, cwd=config.parent)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The whole site, built once with --strict as `make docs` builds it."""
    folder = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def page_text(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


def nav_pages() -> list[Path]:
    """Every Markdown page the site is built from."""
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts and not p.name.startswith("_"))


def test_site_builds_strict_with_every_section(site: Path):
    for page in ("tutorials/own-text", "how-to/multi-gpu", "reference/cli", "reference/python-api",
                 "explanation/ernie2", "results/benchmarks"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "index.html").is_file()


class Links(HTMLParser):
    """The ids, links and images of one built page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"])
        if tag == "a" and found.get("href"):
            self.links.append(found["href"])
        if tag == "img" and found.get("src"):
            self.images.append(found["src"])


def test_no_page_of_the_built_site_has_a_broken_link_anchor_or_image(site: Path):
    pages = {}
    for html in site.rglob("*.html"):
        parser = Links()
        parser.feed(html.read_text(encoding="utf-8"))
        pages[html] = parser
    broken = []
    for html, parser in pages.items():
        for link in [*parser.links, *parser.images]:
            if urlsplit(link).scheme or link.startswith(("mailto:", "//")):
                continue
            path, _, fragment = link.partition("#")
            base = site if path.startswith("/") else html.parent  # 404.html links from the site's root
            target = (base / unquote(path).lstrip("/")).resolve() if path else html
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{html.relative_to(site)}: {link} (no such file)")
            elif fragment and target.suffix == ".html" and unquote(fragment) not in pages[target].ids:
                broken.append(f"{html.relative_to(site)}: {link} (no such anchor)")
    assert len(pages) > 30
    assert not broken, "\n".join(broken)


def test_cli_page_lists_every_option_of_every_command_with_its_default_and_range(site: Path):
    from ernie_cpt.cli import build_parser
    from ernie_cpt.commands.options import pretrain_option_classes

    html = page_text(site, "reference/cli")
    parser = build_parser()
    for name, sub in generated._subcommands(parser).items():
        assert f"ernie-cpt {name}" in html
        for action in sub._actions:
            for flag in [] if action.dest == "help" else action.option_strings:
                assert f"<code>{flag}</code>" in html, (name, flag)
    rows = {row.split('"')[0]: row for row in html.split('<span id="')[1:]}
    for cls in pretrain_option_classes():
        for field in dataclasses.fields(cls):
            row = rows[generated.anchor("pretrain", field.name)]
            valid = field.metadata.get("valid")
            if valid is not None:
                assert str(valid) in row, (field.name, str(valid))
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                assert f"<code>{default}</code>" in row, (field.name, default)


def add_field(source: str, cls: str, line: str) -> str:
    """``source`` with ``line`` added as the last field of class ``cls`` (found with ast)."""
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == cls)
    lines = source.splitlines()
    lines.insert(node.end_lineno, f"    {line}")
    return "\n".join(lines) + "\n"


def test_a_field_added_to_an_option_class_appears_in_the_built_cli_page(tmp_path: Path):
    """A copy of the packages whose TrainingOptions has one more field, and the CLI page built from it."""
    for package in ("ernie_cpt", "pretasks", "schedules"):
        shutil.copytree(ROOT / package, tmp_path / "src" / package, ignore=shutil.ignore_patterns("__pycache__"))
    options = tmp_path / "src" / "ernie_cpt" / "training" / "options.py"
    options.write_text(add_field(options.read_text(encoding="utf-8"), "TrainingOptions",
                                 'docs_probe_steps: int = option(7, "A field the docs test added", '
                                 'valid=Range(2, 9))'), encoding="utf-8")
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / "docs" / "reference" / "cli.md").write_text("# CLI\n\n<!-- generated: cli -->\n", encoding="utf-8")
    (tmp_path / "docs" / "index.md").write_text("# Probe\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: probe\nnav: [index.md, reference/cli.md]\nhooks: [{DOCS / '_hooks' / 'generated.py'}]\n"
        "theme: {name: material}\nmarkdown_extensions: [attr_list, tables]\n", encoding="utf-8")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site", pythonpath=tmp_path / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    html = page_text(tmp_path / "site", "reference/cli")
    for command in ("pretrain", "compare"):
        row = html.split(f'<span id="{command}-docs-probe-steps">')[1].split("</tr>")[0]
        assert "<code>--docs-probe-steps</code>" in row
        assert "<code>7</code>" in row and "between 2 and 9" in row and "A field the docs test added" in row


def test_every_registered_plugin_has_its_section_in_the_reference(site: Path):
    pages = {"tasks": "reference/tasks", "architectures": "reference/architectures",
             "weightings": "reference/weightings", "curricula": "reference/curricula",
             "samplers": "reference/curricula", "allocations": "reference/curricula", "heads": "reference/tasks"}
    for kind, registry in generated.registries().items():
        html = page_text(site, pages[kind])
        for name in registry:
            assert f"<code>{name}</code></h3>" in html or f'id="{name}"' in html, (kind, name)


def test_benchmark_tables_are_rendered_from_the_committed_json(site: Path):
    import json

    html = page_text(site, "results/benchmarks")
    for path in sorted((DOCS / "results").glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        assert result["command"] in html and result["date"] in html
        for row in result["rows"]:
            assert f"{row['ours'] / row['baseline']:.2f}x" in html


FORBIDDEN = {
    "the developers' folder of corpora": re.compile(r"\.\./shared|shared/corpora"),
    "load averages": re.compile(r"load average", re.IGNORECASE),
    "rounds of development": re.compile(r"\b(?:this|earlier|previous|last|next)(?:'s)? rounds?\b|\brounds? \d|"
                                        r"\brounds of\b", re.IGNORECASE),
    "CI internals": re.compile(r"\.ci/|the project's CI|\bCI (?:timings?|runs? (?:took|in))", re.IGNORECASE),
}
DEVELOPER_PAGES = ("results/",)  # dated results pages may say what machine and load they ran under


def front_pages() -> list[Path]:
    """The site's pages and the README, the front door."""
    return [*nav_pages(), ROOT / "README.md"]


@pytest.mark.parametrize("page", front_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_speaks_of_what_only_developers_have(page: Path):
    relative = str(page.relative_to(DOCS)) if page.is_relative_to(DOCS) else page.name
    text = page.read_text(encoding="utf-8")
    for what, pattern in FORBIDDEN.items():
        if relative.startswith(DEVELOPER_PAGES) and what == "load averages":
            continue
        assert not pattern.search(text), f"{relative} mentions {what}: {pattern.search(text)[0]!r}"


# --- the error table against the code ----------------------------------------------------------------------

PLAIN_WORD = re.compile(r"^[A-Za-z][a-z]*(?:[-'][a-z]+)*[,;:]?$")
# Messages the code composes from two literals, so no literal holds their words in a row
COMPOSED = {"file that is truncated or damaged": "'file that is {reason}' + 'truncated or damaged'",
            "stages and needs at least": "'{plural(n, \"stage\")} and needs {advice}' with advice 'at least N steps'"}


def code_literals() -> str:
    """Every string literal of the packages, an f-string's replacement fields as NUL, whitespace collapsed."""
    parts = []
    for package in ("ernie_cpt", "pretasks", "schedules"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.JoinedStr):
                    parts.append("\0".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    parts.append(node.value)
    return "\0".join(" ".join(part.split()) for part in parts)


def clauses(message: str) -> list[str]:
    """The runs of plain words of a quoted message (paths, numbers, placeholders such as F and RUN, and
    quoted values break them), cut at , ; and :, of at least three words."""
    runs, run = [], []
    for token in [*message.split(), "|"]:
        if PLAIN_WORD.match(token) and not re.fullmatch(r"[A-Z]{1,5}[,;:]?", token):
            run.append(token)
        else:
            runs.append(" ".join(run))
            run = []
    return [c.strip() for r in runs for c in re.split(r"[,;:] ", r.rstrip(",;:")) if len(c.split()) >= 3]


def in_code(clause: str, code: str) -> bool:
    """The clause is in a literal, give or take a word at either end (next to a replacement field), or
    four of its words in a row are."""
    w = clause.split()
    return (any(" ".join(v) in code for v in (w, w[1:], w[:-1], w[1:-1]) if len(v) >= 2)
            or any(" ".join(w[i:i + 4]) in code for i in range(max(1, len(w) - 3))) or clause in COMPOSED)


def test_the_error_table_quotes_messages_the_code_writes():
    """Each message quoted in reference/errors.md must be one the code can write: most of the words of
    every clause of it stand in a row in a string literal of the packages. A reworded message in the
    code, or a message the page made up, fails here."""
    code = code_literals()
    rows = [line for line in (DOCS / "reference" / "errors.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| input")]
    assert len(rows) > 40
    stale = []
    for row in rows:
        for quoted in re.findall(r"`([^`]+)`", row.split(" | ", 1)[1]):
            parts = clauses(quoted)
            found = sum(len(c.split()) for c in parts if in_code(c, code))
            if parts and found < 0.6 * sum(len(c.split()) for c in parts):
                stale.append(quoted)
    assert not stale, "messages the code no longer writes (update docs/reference/errors.md):\n" + "\n".join(stale)


def test_the_error_check_fails_on_a_message_the_code_does_not_write():
    code = code_literals()
    assert all(in_code(c, code) for c in clauses("corpus path P does not exist; pass existing files or folders "
                                                  "to --corpus"))
    made_up = clauses("corpus path P is missing; give the paths of existing documents with --corpus")
    assert not any(in_code(c, code) for c in made_up)


def test_the_readme_is_a_front_door():
    """The README: at most 200 lines, the two commands first, an install recipe, a Python and a CLI example,
    and links that resolve from the repository root."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert text.index("make demo") < text.index("## Install")
    for needed in ("make demo", "make test", "pip install torch", "```python", "ernie-cpt pretrain --corpus",
                   "LICENSE", "CITATION.cff", "CONTRIBUTING.md"):
        assert needed in text, needed
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not urlsplit(target).scheme:
            assert (ROOT / target).exists(), target


@pytest.mark.parametrize("page", ["index.html", "reference/cli/index.html"])
def test_a_headless_browser_finds_every_anchor_and_image_of_the_page(site: Path, page: str):
    """Chromium (Debian's package; skipped where it is not installed) loads the page, runs its scripts,
    and the DOM it ends with holds every in-page anchor its links name, and no image is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                             (site / page).as_uri()], capture_output=True, text=True, timeout=120)
    dom = Links()
    dom.feed(result.stdout)
    assert "ernie-cpt" in result.stdout and len(dom.ids) > 10, result.stderr[-2000:]
    missing = [link for link in dom.links if link.startswith("#") and len(link) > 1 and link[1:] not in dom.ids]
    assert not missing, missing
    assert all((site / page).parent.joinpath(src).resolve().exists() for src in dom.images
               if not urlsplit(src).scheme)
