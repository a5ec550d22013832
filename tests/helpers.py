"""What the tests of the command line's errors share: run a command that must fail, and check that it
fails as promised (exit code 2, one ``ernie-cpt: error:`` line that says what to do, nothing written)."""

from __future__ import annotations

from pathlib import Path

from ernie_cpt.cli import main

PREFIX = "ernie-cpt: error: "


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def expect_error(argv: list[str], capsys, root: Path | None, *expected: str, warnings: bool = False) -> str:
    """Run the CLI with ``argv`` and check: exit code 2, one error line holding each of ``expected``, no
    traceback, and nothing under ``root`` changed (no run folder, cache, staging folder or edited file
    left behind; None: not checked). Stderr holds only that line unless ``warnings`` allows log lines
    before it. Returns the error message (after ``ernie-cpt: error: ``)."""
    capsys.readouterr()
    before = snapshot(root) if root is not None else None

    code = main(argv)

    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(PREFIX)]
    assert code == 2 and len(errors) == 1 and "Traceback" not in stderr, stderr
    assert warnings or lines == errors, stderr
    for text in expected:
        assert text in errors[0], errors[0]
    if root is not None:
        assert snapshot(root) == before
    return errors[0].removeprefix(PREFIX)
