"""report.html: the Markdown report as one standalone HTML page, its figures embedded.

Python-Markdown (with its ``tables`` extension) renders report.md, and every ``<img>`` whose
source is a file beside it is replaced by a ``data:image/png;base64`` URI, so the page opens in
any browser with no other file: it can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; }
td { text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""
IMAGE = re.compile(r'<img alt="([^"]*)" src="([^"]+)"')


def markdown_to_html(text: str, folder: Path, title: str) -> str:
    """``text`` (Markdown) as a standalone HTML page; images named relative to ``folder`` are
    embedded. Raises FileNotFoundError when an image file is missing."""
    body = markdown.markdown(text, extensions=["tables"], output_format="html")

    def embed(match: re.Match[str]) -> str:
        source = match.group(2)
        if source.startswith("data:"):
            return match.group(0)
        data = base64.b64encode((folder / source).read_bytes()).decode("ascii")
        return f'<img alt="{match.group(1)}" src="data:image/png;base64,{data}"'

    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{IMAGE.sub(embed, body)}\n</body>\n</html>\n")
