"""A report opened as a person opens it: from a file, in a real headless Chromium.

What the page looked like after loading is read back from the DOM Chromium dumps: a script added
to a copy of the page records, once everything loaded, how many images there are, how many
decoded, where the headline sits and the document's title. The screenshot is of the page as
written, untouched."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

#: Candidates for the browser binary (Debian's package installs ``chromium``).
BINARIES = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 900)

_CHECK = (
    "<script>addEventListener('load',()=>{const imgs=[...document.images];"
    "const h=document.getElementById('driftmon-headline');const box=h&&h.getBoundingClientRect();"
    "document.body.setAttribute('data-driftmon-check',JSON.stringify({"
    "images:imgs.length,loaded:imgs.filter(i=>i.complete&&i.naturalWidth>0).length,"
    "headline:h?h.textContent:null,headline_bottom:box?box.bottom:null,"
    "viewport_height:innerHeight,title:document.title}));});</script>"
)


def chromium() -> str | None:
    return next((p for p in map(shutil.which, BINARIES) if p), None)


def _run(binary: str, *args: str) -> str:
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    return done.stdout


def open_report(page: Path, screenshot: Path) -> dict[str, object]:
    """Load ``page`` (a file) in Chromium; returns what the check script saw and writes a
    screenshot of the top of the page (1280 px wide) to ``screenshot``."""
    binary = chromium()
    assert binary is not None, "no Chromium on PATH (.ci/apt-packages.txt installs it)"
    text = page.read_text()
    at = text.lower().rindex("</body>")
    checked = page.with_name(page.stem + ".checked.html")
    checked.write_text(text[:at] + _CHECK + text[at:])
    width, height = WINDOW
    dom = _run(binary, f"--window-size={width},{height}", "--dump-dom", checked.as_uri())
    found = re.search(r'data-driftmon-check="([^"]*)"', dom)
    assert found, "the page's load event never fired in Chromium"
    _run(binary, f"--window-size={width},1600", f"--screenshot={screenshot}", page.as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 0
    return json.loads(unescape(found.group(1)))
