"""Check a built book the way a reader sees it: every HTML page, opened in headless Chromium.

``python -m brainattr check-book [_build/html]`` (or ``make check-book``) reports, per page:

- ``missing-image``: an ``<img>`` whose file is missing or that the browser cannot decode
  (``naturalWidth`` 0);
- ``broken-link``: a link to a local page, file or anchor that does not exist (external links are
  not followed: the book is checked offline);
- ``empty-figure``: a figure with no image in it, an ``<img>`` with an empty ``src``, an empty
  output area of a code cell, or a matplotlib figure that reached the page only as its text
  ``<Figure size ... with N Axes>``;
- ``missing-file``: a local script, stylesheet or other resource that is not there, or that the
  browser failed to load;
- ``network``: a resource fetched from the internet (the book must work offline, MathJax included);
- ``js-error``: an uncaught exception, a ``console.error`` or an error the browser logged;
- ``math``: math on the page that MathJax did not typeset.

Images without alt text are listed as *notes*, which do not fail the check.

How: the book is served from a local HTTP server (as GitHub Pages would serve it); Chromium runs
headless, driven by Selenium through ChromeDriver (Debian: ``apt-get install chromium
chromium-driver``; the ``book`` extra installs ``selenium``). The driver is always given explicitly
(:func:`find_browser` pairs a browser with the ChromeDriver of its version), so Selenium Manager
never downloads anything. The browser's console log gives the JavaScript errors, its performance
log every network request. The static checks (links, files, figures; :mod:`.static_check`) need neither
(``--static-only``). Screenshots of the landing page and of the first chapter with a figure are
saved (default ``build/screenshots/``).

Selenium is imported only when a browser is started, so this module (and ``brainattr --help``)
works without it, on any operating system.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .static_check import (
    Problem,
    ancestors,
    html_pages,
    local_target,
    meta_refresh,
    page_anchors,
    parse_html,
    static_problems,
)

#: Executables tried, in order, when neither ``--chromium`` nor ``$BRAINATTR_CHROMIUM`` is given.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
                  "chrome-headless-shell", "headless_shell")
#: ChromeDriver executables tried, in order, when neither ``--chromedriver`` nor ``$BRAINATTR_CHROMEDRIVER`` is given.
CHROMEDRIVER_NAMES = ("chromedriver",)
#: Where distributions put ChromeDriver when it is not on the PATH (Debian's chromium-driver, Ubuntu's).
CHROMEDRIVER_PLACES = ("/usr/lib/chromium/chromedriver", "/usr/lib/chromium-browser/chromedriver")
#: Chromium's command-line flags. Without the background-networking ones, Chromium keeps trying to
#: reach Google's servers, and a closed network refuses many of those connections.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--no-default-browser-check", "--disable-extensions",
                  "--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1")
VIEWPORT = (1280, 900)
#: Seconds a page may take to load, and the checker's script to run in it.
PAGE_TIMEOUT, SCRIPT_TIMEOUT = 60.0, 90.0

@dataclass
class Report:
    """The result of :func:`check_book`.

    Attributes
    ----------
    root : Path
        The book's root folder (``_build/html``).
    pages : list of str
        Every page checked, relative to ``root``.
    problems : list of Problem
        Everything that fails the check, without duplicates.
    notes : list of str
        Things worth knowing that do not fail it (images without alt text).
    screenshots : list of Path
        The screenshots written.
    browser : str or None
        The browser's version (``Chrome/...``); None for a static-only check.
    """

    root: Path
    pages: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    browser: str | None = None

    @property
    def ok(self) -> bool:
        """True when no problem was found (notes do not count)."""
        return not self.problems

    def add(self, problem: Problem) -> None:
        """Record ``problem`` unless the same one is recorded already."""
        if problem not in self.problems:
            self.problems.append(problem)

    def summary(self) -> str:
        """The report as text: pages checked, problems, notes, screenshots, then the count."""
        lines = [f"checked {len(self.pages)} page(s) in {self.root} "
                 f"({'browser: ' + self.browser if self.browser else 'static checks only, no browser'})"]
        lines += [f"  PROBLEM {p}" for p in self.problems]
        lines += [f"  note    {n}" for n in self.notes]
        lines += [f"  screenshot {s}" for s in self.screenshots]
        lines.append(f"{len(self.problems)} problem(s)" if self.problems else "no problems")
        return "\n".join(lines)


# --------------------------------------------------------------------------- static checks



# --------------------------------------------------------------------------- the browser


class BrowserError(RuntimeError):
    """Chromium, ChromeDriver or Selenium is missing, or the browser could not be started."""


def _which(name: str | None) -> str | None:
    if not name:
        return None
    found = shutil.which(name)
    if found:
        return found
    path = Path(name)
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _chromium_candidates(explicit: str | None = None) -> list[str]:
    """Browser executables, in order of preference: ``explicit`` or ``$BRAINATTR_CHROMIUM`` alone, else the PATH's."""
    chosen = explicit or os.environ.get("BRAINATTR_CHROMIUM")
    names = (chosen,) if chosen else CHROMIUM_NAMES
    found = [_which(n) for n in names]
    return list(dict.fromkeys(f for f in found if f))


def _chromedriver_candidates(explicit: str | None = None, chromium: str | None = None) -> list[str]:
    """ChromeDriver executables, in order of preference (see :func:`find_chromedriver`)."""
    chosen = explicit or os.environ.get("BRAINATTR_CHROMEDRIVER")
    if chosen:
        names = [chosen]
    else:
        beside = []
        if chromium:
            for folder in dict.fromkeys((Path(chromium).parent, Path(chromium).resolve().parent)):
                beside += [str(folder / n) for n in CHROMEDRIVER_NAMES]
        names = [*CHROMEDRIVER_NAMES, *beside, *CHROMEDRIVER_PLACES]
    found = [_which(n) for n in names]
    return list(dict.fromkeys(f for f in found if f))


@functools.lru_cache(maxsize=32)
def _major_version(executable: str) -> int | None:
    """The major version ``executable --version`` prints (``Chromium 126.0...``); None if unknown."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\b(\d+)\.\d+\.\d+", out)
    return int(match.group(1)) if match else None


def find_chromium(explicit: str | None = None) -> str | None:
    """Find a Chromium or Chrome executable.

    Parameters
    ----------
    explicit : str, optional
        A name on the PATH or a path, tried first (``--chromium``).

    Returns
    -------
    str or None
        The executable's path: ``explicit``, else ``$BRAINATTR_CHROMIUM``, else the first of
        :data:`CHROMIUM_NAMES` on the PATH; None if there is none.
    """
    found = _chromium_candidates(explicit)
    return found[0] if found else None


def find_chromedriver(explicit: str | None = None, chromium: str | None = None) -> str | None:
    """Find the ChromeDriver that drives ``chromium`` (it must be of the same major version).

    Parameters
    ----------
    explicit : str, optional
        A name on the PATH or a path, used if it exists (``--chromedriver``).
    chromium : str, optional
        The browser's executable. A ``chromedriver`` beside it (resolving links) is a candidate,
        and among several candidates the first of the browser's major version is chosen.

    Returns
    -------
    str or None
        ``explicit``, else ``$BRAINATTR_CHROMEDRIVER``, else among ``chromedriver`` on the PATH, beside
        ``chromium``, and Debian's and Ubuntu's places (:data:`CHROMEDRIVER_PLACES`), the first that
        matches the browser's version, or the first of them; None if there is none. Nothing is
        ever downloaded.
    """
    found = _chromedriver_candidates(explicit, chromium)
    if len(found) > 1 and chromium:
        major = _major_version(chromium)
        if major is not None:
            found.sort(key=lambda d: _major_version(d) != major)  # stable: same version first
    return found[0] if found else None


def find_browser(chromium: str | None = None, chromedriver: str | None = None) -> tuple[str | None, str | None]:
    """A browser and a ChromeDriver of the same major version, when the machine has such a pair.

    With several browsers on the PATH (say Chromium and Google Chrome, each of another version) and
    one ChromeDriver, the browser the driver matches is chosen.

    Parameters
    ----------
    chromium, chromedriver : str, optional
        As for :func:`find_chromium` and :func:`find_chromedriver`.

    Returns
    -------
    browser, driver : str or None
        The first matching pair; else :func:`find_chromium` and the driver :func:`find_chromedriver`
        gives for it (the browser then says what is wrong when it starts).
    """
    browsers = _chromium_candidates(chromium)
    if len(browsers) > 1:
        for browser in browsers:
            major = _major_version(browser)
            driver = find_chromedriver(chromedriver, browser)
            if major is not None and driver is not None and _major_version(driver) == major:
                return browser, driver
    browser = browsers[0] if browsers else None
    return browser, find_chromedriver(chromedriver, browser) if browser else None


def _selenium():
    """Selenium's ``webdriver`` module, ``Service`` class and ``exceptions`` module, imported on first use."""
    try:
        from selenium import webdriver
        from selenium.common import exceptions
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserError("The browser check needs Selenium: pip install 'selenium>=4.20' (or the `book` extra: "
                           "pip install -e '.[book]'); or use --static-only.") from None
    return webdriver, Service, exceptions


class Chromium:
    """Headless Chromium driven by Selenium through ChromeDriver, with its logs.

    Parameters
    ----------
    executable : str
        The Chromium/Chrome executable (:func:`find_chromium`).
    driver : str
        The ChromeDriver of the same version (:func:`find_chromedriver`); given to Selenium's
        ``Service(executable_path=...)``, so Selenium Manager is never run.
    timeout : float
        Seconds a page may take to load.

    Attributes
    ----------
    driver : selenium.webdriver.Chrome
        The session (``goog:loggingPrefs``: the ``browser`` log for the console, the
        ``performance`` log for the DevTools network events).
    version : str
        The browser's product string, e.g. ``Chrome/126.0.6478.126``.

    Raises
    ------
    BrowserError
        If Selenium is not installed or the browser does not start (the message holds ChromeDriver's
        answer, e.g. a version mismatch).
    """

    def __init__(self, executable: str, driver: str, timeout: float = PAGE_TIMEOUT):
        webdriver, Service, exceptions = _selenium()
        self._profile = tempfile.mkdtemp(prefix="brainattr-chromium-")  # a fresh profile every time
        options = webdriver.ChromeOptions()
        options.binary_location = executable
        for flag in (*CHROMIUM_FLAGS, f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
                     f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        self._driver_log = Path(self._profile) / "chromedriver.log"
        service = Service(executable_path=driver, log_output=str(self._driver_log))
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except exceptions.WebDriverException as exc:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserError(f"Chromium ({executable}) did not start through ChromeDriver ({driver}): "
                               f"{(exc.msg or str(exc)).strip()}") from None
        self._exceptions = exceptions
        try:
            self.driver.set_page_load_timeout(timeout)
            self.driver.set_script_timeout(SCRIPT_TIMEOUT)
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
            self.version = self.driver.execute_cdp_cmd("Browser.getVersion", {}).get("product") or \
                f"{self.driver.capabilities.get('browserName')} {self.driver.capabilities.get('browserVersion')}"
        except Exception:
            self.close()
            raise
        self.drain()  # the start-up tab's own requests belong to no page

    def drain(self) -> tuple[list[dict], list[dict]]:
        """Read the logs gathered since the last call.

        Returns
        -------
        console : list of dict
            Entries of the ``browser`` log: ``level``, ``source`` (``console-api``, ``javascript``,
            ``network``, ...), ``message``.
        network : list of dict
            DevTools ``Network.*`` events from the ``performance`` log: ``method``, ``params``.
        """
        console = self.driver.get_log("browser")
        network = []
        for entry in self.driver.get_log("performance"):
            try:
                message = json.loads(entry["message"])["message"]
            except (KeyError, TypeError, json.JSONDecodeError):
                continue
            if message.get("method", "").startswith("Network."):
                network.append({"method": message["method"], "params": message.get("params", {})})
        return console, network

    def open(self, url: str) -> str | None:
        """Load ``url`` and wait for its load event; None, or why the page could not be opened.

        A page that does not finish loading within the timeout returns ``"timeout"``.
        """
        try:
            self.driver.get(url)
        except self._exceptions.TimeoutException:
            return "timeout"
        except self._exceptions.WebDriverException as exc:
            return (exc.msg or str(exc)).strip().splitlines()[0]
        return None

    def wait_idle(self, console: list, network: list, quiet: float = 0.4, limit: float = 15.0) -> None:
        """Drain the logs into ``console`` and ``network`` until no request was in flight for ``quiet`` s.

        Waits at most ``limit`` seconds (a page that keeps polling is not waited for forever).
        """
        pending = {e["params"].get("requestId") for e in network if e["method"] == "Network.requestWillBeSent"}
        pending -= {e["params"].get("requestId") for e in network
                    if e["method"] in ("Network.loadingFinished", "Network.loadingFailed")}
        deadline = time.monotonic() + limit
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            new_console, new_network = self.drain()
            console += new_console
            network += new_network
            for event in new_network:
                rid = event["params"].get("requestId")
                if event["method"] == "Network.requestWillBeSent":
                    pending.add(rid)
                elif event["method"] in ("Network.loadingFinished", "Network.loadingFailed"):
                    pending.discard(rid)
                else:
                    continue
                last_change = time.monotonic()
            if not pending and time.monotonic() - last_change >= quiet:
                return
            time.sleep(0.1)

    def run(self, script: str):
        """Run JavaScript in the page and return its result.

        A returned promise is awaited (WebDriver's *Execute Script*), at most :data:`SCRIPT_TIMEOUT`
        seconds; an exception or a timeout is raised as :class:`BrowserError`.
        """
        try:
            return self.driver.execute_script(script)
        except self._exceptions.WebDriverException as exc:
            raise BrowserError((exc.msg or str(exc)).strip()) from None

    def screenshot(self, path: Path) -> Path:
        """Save the visible part of the page as a PNG at ``path``; return ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.driver.get_screenshot_as_png())
        return path

    def close(self) -> None:
        """Quit the browser and ChromeDriver and delete the temporary profile."""
        driver = getattr(self, "driver", None)
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
            self.driver = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server:
    """The book served over HTTP on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


#: Run in the page after it loaded: waits for MathJax and images, then reports what it sees.
_PAGE_JS = r"""
return (async () => {
  const settle = (p, ms) => Promise.race([p, new Promise(r => setTimeout(r, ms))]);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await settle(MathJax.startup.promise.catch(() => null), 15000);
  }
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await settle(Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); }))), 10000);
  const broken = [];
  for (const i of imgs) {
    const src = i.getAttribute('src');
    if (!src || i.naturalWidth > 0) continue;
    let ok = false;
    try { await settle(i.decode(), 5000); ok = true; } catch (e) { ok = false; }
    if (!ok) broken.push(src);
  }
  const media = 'img[src]:not([src=""]), svg, canvas, object, iframe, video, picture, embed';
  const emptyFigures = Array.from(document.querySelectorAll('figure, div.figure'))
    .filter(f => !f.querySelector(media))
    .map(f => (f.innerText || '').trim().slice(0, 80));
  const emptyOutputs = Array.from(document.querySelectorAll('div.cell_output'))
    .filter(o => !o.querySelector(media) && !(o.textContent || '').trim()).length;
  return {
    broken: broken,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    emptyFigures: emptyFigures,
    emptyOutputs: emptyOutputs,
    math: document.querySelectorAll('.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    mathjax: !!(window.MathJax && MathJax.version),
    firstFigure: !!document.querySelector('div.cell_output img'),
  };
})();
"""

#: A ``browser`` log message: ``URL LINE:COLUMN TEXT`` (console calls, uncaught exceptions).
_LOCATED = re.compile(r"^(?P<url>\S+) (?P<line>\d+):(?P<column>\d+) (?P<text>.*)$", re.S)


def _console_text(text: str) -> str:
    """A console call's arguments as logged (``"a string"`` JSON-quoted), without the quotes."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, str) else text


def console_problems(rel: str, entries: list[dict], base: str) -> list[Problem]:
    """JavaScript errors among a page's ``browser`` log entries.

    Parameters
    ----------
    rel : str
        The page, relative to the book's root (names the problems).
    entries : list of dict
        ``browser`` log entries (``level``, ``source``, ``message``), as from :meth:`Chromium.drain`.
    base : str
        The server's URL; stripped from locations to keep them short.

    Returns
    -------
    list of Problem
        One ``js-error`` per uncaught exception (``source`` ``javascript``), ``console.error`` or
        failed ``console.assert`` (``console-api``) and other error the browser logged. Failed
        loads (``network``) are left to :func:`network_problems`, which knows the status.
    """
    problems = []
    for entry in entries:
        source, message = entry.get("source", ""), entry.get("message", "")
        if entry.get("level") != "SEVERE" or source == "network":
            continue
        located = _LOCATED.match(message)
        text = located.group("text") if located else message
        where = ""
        if located and located.group("url").startswith(base):
            where = f" at {located.group('url')[len(base):]}:{located.group('line')}"
        if source == "console-api":
            problems.append(Problem(rel, "js-error", f"console.error: {_console_text(text)[:300]}"))
        elif source == "javascript":
            first = text.splitlines()[0] if text else "?"
            first = "uncaught " + first[len("Uncaught "):] if first.startswith("Uncaught ") else f"uncaught {first}"
            problems.append(Problem(rel, "js-error", f"{first}{where}"))
        else:
            problems.append(Problem(rel, "js-error", f"{source}: {text[:300]}"))
    return problems


def network_problems(rel: str, events: list[dict], base: str) -> list[Problem]:
    """Requests that left the machine, and local resources that failed, among a page's network events.

    Parameters
    ----------
    rel : str
        The page, relative to the book's root.
    events : list of dict
        DevTools ``Network.*`` events (``method``, ``params``), as from :meth:`Chromium.drain`.
    base : str
        The local server's URL: any http(s) or websocket request elsewhere is a ``network`` problem.

    Returns
    -------
    list of Problem
        ``network`` for a request to another host; ``missing-file`` for a local answer with status
        400 or more, or a local load that failed (``favicon.ico``, which the book does not ship, aside).
    """
    problems, urls = [], {}
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            urls[params.get("requestId")] = url
            if url.startswith(("http://", "https://", "ws://", "wss://")) and not url.startswith(base):
                problems.append(Problem(rel, "network", f"fetches {url} (the book must work offline)"))
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            url = response.get("url", "")
            if response.get("status", 200) >= 400 and url.startswith(base) and not url.endswith("/favicon.ico"):
                problems.append(Problem(rel, "missing-file", f"{response['status']} for {url[len(base):]}"))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = urls.get(params.get("requestId"), "?")
            if not url.endswith("/favicon.ico") and url.startswith(base):
                problems.append(Problem(rel, "missing-file", f"{params.get('errorText')} for {url[len(base):]}"))
    return problems


def _seen_problems(root: Path, rel: str, seen: dict, base: str) -> list[Problem]:
    """Problems in what the checker's script (:data:`_PAGE_JS`) reported about the rendered page."""
    problems = [Problem(rel, "missing-image", f"image {src!r} did not load (naturalWidth 0)")
                for src in seen.get("broken", [])]
    problems += [Problem(rel, "empty-figure", f"figure with no image ({caption or 'no caption'})")
                 for caption in seen.get("emptyFigures", [])]
    if seen.get("emptyOutputs"):
        problems.append(Problem(rel, "empty-figure", "empty output area of a code cell"))
    for href in seen.get("links", []):
        if not href.startswith(base):
            continue
        hit = local_target(root, rel, href, base=base)
        if hit and not hit[0].is_file():
            problems.append(Problem(rel, "broken-link", f"link {href[len(base):]!r}: no such file"))
        elif hit and hit[1] and hit[0].suffix == ".html" and hit[1] not in page_anchors(hit[0]):
            problems.append(Problem(rel, "broken-link", f"link {href[len(base):]!r}: no such anchor"))
    if seen.get("math") and not seen.get("typeset"):
        why = "MathJax did not load" if not seen.get("mathjax") else "MathJax typeset nothing"
        problems.append(Problem(rel, "math", f"{seen['math']} math element(s) not rendered ({why})"))
    return problems


def page_problems(browser: Chromium, root: Path, rel: str, base: str) -> list[Problem]:
    """Open one page in ``browser`` and return what is wrong with it as a reader sees it.

    Parameters
    ----------
    browser : Chromium
        The running browser; the page stays open afterwards (for a screenshot).
    root : Path
        The book's root folder (to resolve the links the page shows).
    rel : str
        The page, relative to ``root``.
    base : str
        The URL ``root`` is served at.

    Returns
    -------
    list of Problem
        From the rendered page (:func:`_seen_problems`), its console (:func:`console_problems`) and
        its network traffic (:func:`network_problems`).
    """
    browser.drain()  # whatever the previous page logged late is not this page's
    console: list[dict] = []
    network: list[dict] = []
    problems = []
    failure = browser.open(base + rel)
    if failure == "timeout":
        problems.append(Problem(rel, "js-error", f"the page did not finish loading within {PAGE_TIMEOUT:.0f} s"))
    elif failure:
        return [Problem(rel, "missing-file", f"cannot open: {failure}")]
    browser.wait_idle(console, network)
    try:
        seen = browser.run(_PAGE_JS) or {}
    except BrowserError as exc:
        problems.append(Problem(rel, "js-error", f"the checker's script failed: {exc}"))
        seen = {}
    browser.wait_idle(console, network)
    problems += _seen_problems(Path(root), rel, seen, base)
    problems += network_problems(rel, network, base)
    problems += console_problems(rel, console, base)
    return problems


def _landing(root: Path) -> str:
    """The page a reader lands on: index.html, or where its redirect leads."""
    index = Path(root) / "index.html"
    if index.is_file():
        refresh = meta_refresh(parse_html(index))
        hit = local_target(root, "index.html", refresh) if refresh else None
        if hit and hit[0].is_file():
            return hit[0].relative_to(root).as_posix()
        return "index.html"
    pages = html_pages(root)
    return pages[0].relative_to(root).as_posix() if pages else ""


def _figure_page(root: Path, pages: list[Path]) -> str | None:
    """The first notebook chapter (by path) with an image in a code cell's output."""
    def has_figure(page):
        return any(n.tag == "img" and any("cell_output" in a.classes for a in ancestors(n)) for n in parse_html(page).iter())
    ranked = sorted(pages, key=lambda p: ("notebooks" not in p.parts, p.as_posix()))
    return next((p.relative_to(root).as_posix() for p in ranked if has_figure(p)), None)


def browser_problems(root: Path, pages: list[Path], browser: Chromium, screenshots: Path | None = None,
                     echo=lambda m: None) -> tuple[list[Problem], list[Path]]:
    """Open every page in ``browser`` (:func:`page_problems`) and take the screenshots.

    Parameters
    ----------
    root : Path
        The book's root folder; it is served over HTTP on 127.0.0.1 while the pages are checked.
    pages : list of Path
        The pages to open (redirect pages are skipped: their targets are pages of their own).
    browser : Chromium
        The running browser.
    screenshots : Path, optional
        Folder for ``landing.png`` (the page ``index.html`` leads to) and ``figure-<page>.png`` (the
        first chapter with a figure, scrolled to it); None takes none.
    echo : callable
        Called with each page's path before it is opened (progress).

    Returns
    -------
    problems : list of Problem
    shots : list of Path
        The screenshots written.
    """
    root = Path(root)
    problems: list[Problem] = []
    shots: list[Path] = []
    landing, figure_page = _landing(root), _figure_page(root, pages)
    server = _Server(root)
    try:
        for page in pages:
            rel = page.relative_to(root).as_posix()
            if meta_refresh(parse_html(page)):
                continue
            echo(f"  {rel}")
            problems += page_problems(browser, root, rel, server.base)
            if screenshots is not None and rel == landing:
                shots.append(browser.screenshot(Path(screenshots) / "landing.png"))
            if screenshots is not None and rel == figure_page:
                browser.run("document.querySelector('div.cell_output img').scrollIntoView({block: 'center'});")
                time.sleep(0.3)
                shots.append(browser.screenshot(Path(screenshots) / f"figure-{Path(rel).stem}.png"))
    finally:
        server.close()
    return problems, shots


# --------------------------------------------------------------------------- entry points


def check_book(root: Path | str = "_build/html", screenshots: Path | str | None = "build/screenshots",
               browser: bool = True, chromium: str | None = None, echo=lambda m: None,
               chromedriver: str | None = None) -> Report:
    """Check every page of the built book in ``root``; see the module docstring for what counts.

    Parameters
    ----------
    root : Path or str
        The built book (``_build/html``).
    screenshots : Path or str, optional
        Folder for the screenshots (default ``build/screenshots``); None takes none.
    browser : bool
        Open the pages in Chromium (default); False runs the static checks only.
    chromium, chromedriver : str, optional
        The executables (default: :func:`find_chromium`, :func:`find_chromedriver`).
    echo : callable
        Called with a line of progress per page opened.

    Returns
    -------
    Report

    Raises
    ------
    FileNotFoundError
        If ``root`` holds no HTML page.
    BrowserError
        With ``browser``, if Chromium, ChromeDriver or Selenium is missing or the browser does not start.
    """
    root = Path(root).resolve()
    if not (root / "index.html").is_file() and not html_pages(root):
        raise FileNotFoundError(f"No built book in {root} (build it with `make book` or `python -m brainattr book`).")
    parse_html.cache_clear()
    page_anchors.cache_clear()
    pages = html_pages(root)
    report = Report(root=root, pages=[p.relative_to(root).as_posix() for p in pages])
    for page in pages:
        found, notes = static_problems(root, page)
        for problem in found:
            report.add(problem)
        report.notes += notes
    if browser:
        executable, driver = find_browser(chromium, chromedriver)
        if executable is None:
            chosen = chromium or os.environ.get("BRAINATTR_CHROMIUM")
            tried = repr(chosen) if chosen else "$BRAINATTR_CHROMIUM, " + ", ".join(CHROMIUM_NAMES)
            raise BrowserError(f"No Chromium found (tried {tried}). Debian: apt-get install chromium "
                               f"chromium-driver; or use --static-only.")
        if driver is None:
            raise BrowserError("No ChromeDriver found (tried $BRAINATTR_CHROMEDRIVER, chromedriver on the PATH, "
                               "beside Chromium and " + ", ".join(CHROMEDRIVER_PLACES) + "). Debian: apt-get install "
                               "chromium-driver (the same version as chromium); or use --static-only.")
        with Chromium(executable, driver) as chrome:
            report.browser = chrome.version
            found, report.screenshots = browser_problems(root, pages, chrome,
                                                         Path(screenshots) if screenshots else None, echo)
        for problem in found:
            report.add(problem)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check-book`` arguments and options to ``parser`` (used by :mod:`brainattr.book.cli`)."""
    parser.add_argument("html", nargs="?", default="_build/html", help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", default="build/screenshots",
                        help="folder for the screenshots (default: build/screenshots)")
    parser.add_argument("--static-only", action="store_true", help="no browser: links, files and figures only")
    parser.add_argument("--chromium", default=None, help="the Chromium/Chrome executable (default: found on PATH)")
    parser.add_argument("--chromedriver", default=None,
                        help="the ChromeDriver of the same version (default: found on PATH or beside Chromium)")


def main(args: argparse.Namespace) -> int:
    """Run the check from parsed ``check-book`` arguments and print the report.

    Returns
    -------
    int
        0 if no problem was found, 1 otherwise (or if the book or the browser is missing).
    """
    try:
        report = check_book(args.html, args.screenshots, browser=not args.static_only, chromium=args.chromium,
                            chromedriver=getattr(args, "chromedriver", None), echo=lambda m: print(m, flush=True))
    except (BrowserError, FileNotFoundError) as exc:
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1
