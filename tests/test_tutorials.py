"""Every ``bash`` and ``python`` code block of the tutorials runs, as a reader would run them, on the
bundled sample (``mktestdocs``: a page's bash blocks in order in one folder, then its python blocks
as one script), or is marked as not run with its reason:

    ```bash { .not-run reason="needs two machines" }

which renders like any bash block (the attribute list is dropped) and which mktestdocs skips.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

mktestdocs = pytest.importorskip("mktestdocs", reason="the docs extra (pip install -e '.[docs]') has mktestdocs")

pytestmark = pytest.mark.minutes

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
RUNNABLE = {"bash", "python"}
SHELL_OR_PYTHON = {"bash", "sh", "shell", "console", "python", "py", "python3", "pycon"}
FENCE = re.compile(r"^ *```+ *(\S[^\n]*)$", re.MULTILINE)  # the info string of an opening fence
NOT_RUN = re.compile(r'^(\w+) \{ *\.not-run reason="([^"]{10,})" *\}$')


def fence_infos(page: Path) -> list[str]:
    return [info.strip() for info in FENCE.findall(page.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_every_shell_and_python_block_runs_or_gives_its_reason(page: Path):
    for info in fence_infos(page):
        language = info.split()[0].strip("{.")
        if language in SHELL_OR_PYTHON and info not in RUNNABLE:
            match = NOT_RUN.match(info)
            assert match and match[1] in RUNNABLE, (
                f"{page.name}: a ```{info} block is neither run (```bash, ```python) nor marked "
                '```bash { .not-run reason="why it is not run" }')


def run_page(page: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    mktestdocs.check_md_file(page, lang="bash")
    mktestdocs.check_md_file(page, lang="python", memory=True)


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if page.stem == "continue-bert":  # its `pip install` goes to a folder of the test, not into the environment
        monkeypatch.setenv("PIP_TARGET", str(tmp_path / "packages"))
        monkeypatch.setenv("PYTHONPATH", str(tmp_path / "packages"))
        monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    run_page(page, tmp_path, monkeypatch)
