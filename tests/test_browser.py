"""The built book, checked in a real browser (brainattr.book.check), and the checker itself.

The checker is first run on a small hand-made site with planted problems (so these tests can fail),
then on the whole book built with the `tiny` profile. The browser tests need Chromium, the
ChromeDriver of the same version (Debian: `apt-get install chromium chromium-driver`; .ci/run
installs them) and Selenium; they skip with the reason when one is absent.
"""
from __future__ import annotations

import base64
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brainattr.book.check import check_book, find_chromedriver, find_chromium

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = find_chromium()
CHROMEDRIVER = find_chromedriver(chromium=CHROMIUM)
SELENIUM = importlib.util.find_spec("selenium") is not None
_MISSING = [what for what, there in (("Chromium", CHROMIUM), ("ChromeDriver", CHROMEDRIVER), ("selenium", SELENIUM))
            if not there]
needs_chromium = pytest.mark.skipif(bool(_MISSING), reason=f"{' and '.join(_MISSING)} not installed (Debian: apt-get "
                                                           f"install chromium chromium-driver; pip install selenium); "
                                                           f"the browser checks are skipped")
# a 1x1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>{head}</head>
<body><main>{body}</main></body></html>"""

GOOD = """
<h1 id="top">Good</h1>
<p><a href="other.html#sec">a section</a>, <a href="#top">this page</a>, <a href="sub/">a folder</a>,
<a href="https://example.org/">an external page</a>, <a href="mailto:x@example.org">mail</a></p>
<figure><img alt="a dot" src="_images/dot.png"><figcaption>A dot.</figcaption></figure>
<div class="cell_output docutils container"><pre>printed text</pre></div>
<div class="cell_output docutils container"><img alt="another dot" src="_images/dot.png"></div>
"""

BAD = """
<h1>Bad</h1>
<p><a href="missing.html">gone</a> <a href="good.html#nowhere">no anchor</a></p>
<img alt="x" src="_images/missing.png">
<img alt="y" src="">
<img alt="z" src="_images/corrupt.png">
<img alt="w" src="https://example.invalid/picture.png">
<figure><figcaption>A caption without its figure</figcaption></figure>
<div class="cell_output docutils container"></div>
<div class="cell_output docutils container"><pre>&lt;Figure size 640x480 with 0 Axes&gt;</pre></div>
<p>Math MathJax never typesets here: <span class="math notranslate nohighlight">\\(x^2\\)</span></p>
<script>console.error("planted console error");</script>
<script>fetch("https://example.invalid/data.json").catch(() => null);</script>
<script>window.addEventListener("load", () => { throw new Error("planted exception"); });</script>
"""


def _site(root: Path) -> Path:
    (root / "_images").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "_images" / "dot.png").write_bytes(PNG)
    (root / "_images" / "corrupt.png").write_bytes(b"this is not a PNG")
    (root / "_static").mkdir()
    (root / "_static" / "ok.js").write_text("window.ok = 1;\n")
    (root / "index.html").write_text('<html><head><meta http-equiv="Refresh" content="0; url=good.html" /></head></html>')
    script = '<script src="_static/ok.js?v=1"></script>'
    (root / "good.html").write_text(PAGE.format(title="good", head=script, body=GOOD))
    (root / "other.html").write_text(PAGE.format(title="other", head="", body='<h2 id="sec">Sec</h2>'))
    (root / "sub" / "index.html").write_text(PAGE.format(title="sub", head="", body="<p>sub</p>"))
    (root / "bad.html").write_text(PAGE.format(title="bad", head='<script src="_static/missing.js"></script>',
                                               body=BAD))
    return root


def _kinds(report, page):
    return sorted({p.kind for p in report.problems if p.page == page})


def test_static_checks_find_the_planted_problems_and_pass_the_good_pages(tmp_path):
    site = _site(tmp_path / "html")
    report = check_book(site, screenshots=None, browser=False)
    assert report.pages == ["bad.html", "good.html", "index.html", "other.html", "sub/index.html"]
    assert report.browser is None
    bad = [str(p) for p in report.problems if p.page == "bad.html"]
    assert not [p for p in report.problems if p.page != "bad.html"], report.summary()
    expected = ["broken-link: link 'missing.html'", "broken-link: link 'good.html#nowhere': no anchor #nowhere",
                "missing-image: image '_images/missing.png'", "empty-figure: an <img> with no src",
                "empty-figure: figure with no image (A caption without its figure)",
                "empty-figure: empty output area of a code cell",
                "empty-figure: figure shown as text only: <Figure size 640x480 with 0 Axes>",
                "missing-file: script '_static/missing.js'"]
    for text in expected:
        assert any(text in b for b in bad), f"not reported: {text}\n{report.summary()}"
    assert not report.ok and "problem(s)" in report.summary()


def test_static_check_follows_the_landing_redirect(tmp_path):
    site = _site(tmp_path / "html")
    (site / "index.html").write_text('<html><head><meta http-equiv="Refresh" content="0; url=gone.html" /></head></html>')
    report = check_book(site, screenshots=None, browser=False)
    assert any(p.page == "index.html" and p.kind == "broken-link" and "gone.html" in p.detail for p in report.problems)


def test_cli_reports_problems_with_exit_status_1(tmp_path, capsys):
    from brainattr.book import cli

    site = _site(tmp_path / "html")
    assert cli.main(["check-book", str(site), "--static-only"]) == 1
    assert "bad.html: broken-link" in capsys.readouterr().out
    (site / "bad.html").unlink()
    assert cli.main(["check-book", str(site), "--static-only"]) == 0
    assert cli.main(["check-book", str(tmp_path / "nothing")]) == 1
    assert "No built book" in capsys.readouterr().err


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="stand-in executables are shell scripts")


@posix_only
def test_chromedriver_is_found_explicitly_by_variable_or_beside_chromium(tmp_path, monkeypatch):
    explicit = _executable(tmp_path / "a" / "chromedriver")
    assert find_chromedriver(str(explicit)) == str(explicit)
    monkeypatch.setenv("BRAINATTR_CHROMEDRIVER", str(explicit))
    assert find_chromedriver() == str(explicit)
    monkeypatch.delenv("BRAINATTR_CHROMEDRIVER")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("brainattr.book.check.CHROMEDRIVER_PLACES", ())
    browser = _executable(tmp_path / "b" / "chrome")
    assert find_chromedriver(chromium=str(browser)) is None
    beside = _executable(tmp_path / "b" / "chromedriver")
    assert find_chromedriver(chromium=str(browser)) == str(beside)


def test_missing_chromedriver_is_an_error_that_says_what_to_install(tmp_path, monkeypatch):
    from brainattr.book import check

    site = _site(tmp_path / "html")
    monkeypatch.setattr(check, "find_browser", lambda chromium=None, chromedriver=None: ("/usr/bin/chromium", None))
    with pytest.raises(check.BrowserError, match="No ChromeDriver found.*chromium-driver"):
        check_book(site, screenshots=None)
    monkeypatch.setattr(check, "find_browser", lambda chromium=None, chromedriver=None: (None, None))
    with pytest.raises(check.BrowserError, match="No Chromium found \\(tried 'my-chrome'\\)"):
        check_book(site, screenshots=None, chromium="my-chrome")


@posix_only
def test_the_browser_of_the_drivers_version_is_chosen(tmp_path, monkeypatch):
    from brainattr.book.check import find_browser

    def fake(name, version):
        return _executable(tmp_path / "bin" / name).write_text(f"#!/bin/sh\necho '{version}'\n")

    fake("chromium", "Chromium 120.0.6099.224 built on Debian")
    fake("google-chrome", "Google Chrome 126.0.6478.126")
    fake("chromedriver", "ChromeDriver 126.0.6478.126 (abc)")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("BRAINATTR_CHROMIUM", raising=False)
    monkeypatch.delenv("BRAINATTR_CHROMEDRIVER", raising=False)
    monkeypatch.setattr("brainattr.book.check.CHROMEDRIVER_PLACES", ())
    assert find_chromium() == str(tmp_path / "bin" / "chromium")  # the first on the list...
    assert find_browser() == (str(tmp_path / "bin" / "google-chrome"), str(tmp_path / "bin" / "chromedriver"))
    assert find_browser("chromium")[0] == str(tmp_path / "bin" / "chromium")  # ...unless named


def test_the_checker_has_no_posix_only_or_eager_browser_imports():
    source = (REPO / "src" / "brainattr" / "book" / "check.py").read_text()
    assert not re.search(r"^\s*import (fcntl|select)\b", source, re.M)
    assert not re.search(r"^(from|import) selenium", source, re.M)  # only inside functions


@needs_chromium
def test_browser_finds_javascript_errors_and_undecodable_images(tmp_path):
    site = _site(tmp_path / "html")
    shots = tmp_path / "shots"
    report = check_book(site, screenshots=shots, browser=True)
    assert report.browser and "Chrome" in report.browser
    assert not [p for p in report.problems if p.page != "bad.html"], report.summary()
    bad = [str(p) for p in report.problems if p.page == "bad.html"]
    for text in ["js-error: console.error: planted console error", "js-error: uncaught Error: planted exception",
                 "missing-image: image '_images/corrupt.png' did not load",
                 "network: fetches https://example.invalid/picture.png",
                 "network: fetches https://example.invalid/data.json",
                 "missing-file: 404 for _static/missing.js",
                 "math: 1 math element(s) not rendered (MathJax did not load)"]:
        assert any(text in b for b in bad), f"not reported: {text}\n{report.summary()}"
    assert (shots / "landing.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # landing = where index.html leads
    assert (shots / "figure-good.png").is_file()


def _ensure_mathjax() -> None:
    if (REPO / "book" / "_static" / "mathjax" / "tex-mml-chtml.js").is_file():
        return
    if shutil.which("npm") is None or shutil.which("make") is None:
        pytest.skip("MathJax is not installed and npm/make are missing to fetch it (`make mathjax`)")
    proc = subprocess.run(["make", "-s", "mathjax"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"`make mathjax` failed (no npm registry?): {proc.stderr[-500:]}")


@pytest.mark.slow
@needs_chromium
def test_tiny_book_has_no_problems_in_the_browser(tmp_path):
    """Build the whole book with the `tiny` profile in a copy of the project, then check every page."""
    from brainattr.book.params import load_config
    from brainattr.book.runner import build_book

    _ensure_mathjax()
    project = tmp_path / "project"
    project.mkdir()
    for name in ("params.yml", "_config.yml"):
        shutil.copy(REPO / name, project / name)
    for name in ("book", "notebooks"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    config = load_config(project / "params.yml")
    html = build_book(config, "tiny", echo=lambda m: None)
    shots = project / "build" / "screenshots"
    report = check_book(html.parent, screenshots=shots)
    assert report.ok, report.summary()
    assert {"book/intro.html", "book/glossary.html", "book/teaching.html", "book/figures_index.html"} <= set(report.pages)
    assert (shots / "landing.png").is_file()
    figure_shots = list(shots.glob("figure-*.png"))
    assert figure_shots, report.summary()
    # plumbing hidden, math local, launch buttons on the sources
    chapter = (html.parent / "build" / "notebooks" / "01_stimulus_and_subjects.html").read_text()
    assert "Show code cell source" in chapter
    pages = {p: p.read_text() for p in html.parent.rglob("*.html")}
    assert not [p for p, text in pages.items() if "cdn.jsdelivr.net" in text]
    assert any("_static/mathjax/tex-mml-chtml.js" in text for text in pages.values())  # pages with math
    assert "/blob/main/notebooks/01_stimulus_and_subjects.ipynb" in chapter
