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
headless and is driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``:
null-separated JSON messages on file descriptors 3 and 4), so nothing beyond the standard library
is needed. The static checks (links, files, figures) also run without a browser
(``--static-only``). Screenshots of the landing page and of the first chapter with a figure are
saved (default ``build/screenshots/``).
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import http.server
import json
import os
import posixpath
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

#: Executables tried, in order, when neither ``--chromium`` nor ``$BRAINATTR_CHROMIUM`` is given.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
                  "chrome-headless-shell", "headless_shell")
#: Output folders of Sphinx that hold no pages of their own.
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", ".doctrees"}
VIEWPORT = (1280, 900)
_MEDIA = {"img", "svg", "canvas", "object", "iframe", "video", "picture", "embed"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr"}
_EMPTY_MPL = re.compile(r"<(?:matplotlib\.figure\.)?Figure(?: size \d+x\d+ with \d+ Axes| at 0x[0-9a-f]+)>")


@dataclass(frozen=True)
class Problem:
    page: str     # path of the page, relative to the book's root folder
    kind: str     # missing-image, broken-link, empty-figure, missing-file, network, js-error, math
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


@dataclass
class Report:
    root: Path
    pages: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    browser: str | None = None  # the browser's version string; None for a static-only check

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def summary(self) -> str:
        lines = [f"checked {len(self.pages)} page(s) in {self.root} "
                 f"({'browser: ' + self.browser if self.browser else 'static checks only, no browser'})"]
        lines += [f"  PROBLEM {p}" for p in self.problems]
        lines += [f"  note    {n}" for n in self.notes]
        lines += [f"  screenshot {s}" for s in self.screenshots]
        lines.append(f"{len(self.problems)} problem(s)" if self.problems else "no problems")
        return "\n".join(lines)


# --------------------------------------------------------------------------- static checks


class _Node:
    __slots__ = ("tag", "attrs", "children", "text", "parent")

    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.text = [], []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)


class _TreeBuilder(HTMLParser):
    """A forgiving element tree from html.parser (enough for Sphinx's well-formed output)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = _Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, attrs, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(_Node(tag, attrs, self.stack[-1]))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].text.append(data)


@functools.lru_cache(maxsize=512)
def _parse(path: Path) -> _Node:
    builder = _TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8", errors="replace"))
    builder.close()
    return builder.root


@functools.lru_cache(maxsize=512)
def _anchors(path: Path) -> frozenset[str]:
    names = set()
    for node in _parse(path).iter():
        for key in ("id", "name"):
            if node.attrs.get(key) and (key == "id" or node.tag == "a"):
                names.add(node.attrs[key])
    return frozenset(names)


def html_pages(root: Path) -> list[Path]:
    """Every HTML page of the built book under ``root``, sorted (Sphinx's asset folders skipped)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))


_BASE = "http://book.invalid/"


def _local_target(root: Path, page: str, ref: str, base: str = _BASE) -> tuple[Path, str] | None:
    """The local file and fragment ``ref`` (found on ``page``) points to; None if not a local link."""
    ref = ref.strip()
    if not ref or ref.startswith(("mailto:", "javascript:", "tel:", "data:", "blob:", "about:")):
        return None
    url = urlsplit(urljoin(urljoin(base, page), ref))
    if f"{url.scheme}://{url.netloc}/" != base:
        return None  # another host: external, not checked offline
    path = unquote(url.path).lstrip("/")
    target = Path(root) / posixpath.normpath(path) if path else Path(root) / "index.html"
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, unquote(url.fragment)


def _meta_refresh(tree: _Node) -> str | None:
    for node in tree.iter():
        if node.tag == "meta" and (node.attrs.get("http-equiv") or "").lower() == "refresh":
            match = re.search(r"url\s*=\s*['\"]?([^'\";]+)", node.attrs.get("content") or "", re.I)
            if match:
                return match.group(1).strip()
    return None


def _has_media(node: _Node) -> bool:
    return any(n.tag in _MEDIA and (n.tag != "img" or (n.attrs.get("src") or "").strip()) for n in node.iter()
               if n is not node)


def _meaningful_alt(img: _Node) -> bool:
    alt, src = (img.attrs.get("alt") or "").strip(), (img.attrs.get("src") or "").strip()
    return bool(alt) and alt != src and not re.fullmatch(r"\S+\.(png|jpe?g|gif|svg|webp)", alt, re.I)


def static_problems(root: Path, page: Path) -> tuple[list[Problem], list[str]]:
    """Problems found in the HTML source of ``page``, without a browser; and notes (alt text)."""
    root = Path(root)
    rel = page.relative_to(root).as_posix()
    tree = _parse(page)
    problems: list[Problem] = []
    unlabelled = 0

    def check_link(ref: str, kind: str, what: str) -> None:
        hit = _local_target(root, rel, ref)
        if hit is None:
            return
        target, fragment = hit
        if not target.is_file():
            problems.append(Problem(rel, kind, f"{what} {ref!r}: no file {target.relative_to(root).as_posix()}"))
        elif fragment and target.suffix == ".html" and fragment not in _anchors(target):
            problems.append(Problem(rel, kind, f"{what} {ref!r}: no anchor #{fragment} in "
                                               f"{target.relative_to(root).as_posix()}"))

    refresh = _meta_refresh(tree)
    if refresh:
        check_link(refresh, "broken-link", "redirect")
    for node in tree.iter():
        tag, attrs = node.tag, node.attrs
        if tag == "a" and attrs.get("href") is not None:
            check_link(attrs["href"], "broken-link", "link")
        elif tag == "img":
            src = (attrs.get("src") or "").strip()
            if not src:
                problems.append(Problem(rel, "empty-figure", "an <img> with no src"))
            else:
                check_link(src, "missing-image", "image")
            in_output = any("cell_output" in a.classes or a.tag == "figure" for a in _ancestors(node))
            if in_output and not _meaningful_alt(node):
                unlabelled += 1
        elif tag == "script" and attrs.get("src"):
            check_link(attrs["src"].split("?")[0], "missing-file", "script")
        elif tag == "link" and attrs.get("href"):
            relation = (attrs.get("rel") or "").lower()
            kind = "broken-link" if relation in ("next", "prev", "index", "search") else "missing-file"
            check_link(attrs["href"].split("?")[0] if kind == "missing-file" else attrs["href"], kind,
                       f"<link rel={relation!r}>")
        elif tag == "figure" or (tag == "div" and "figure" in node.classes):
            if not _has_media(node):
                caption = " ".join(node.all_text().split())[:80]
                problems.append(Problem(rel, "empty-figure", f"figure with no image ({caption or 'no caption'})"))
        elif tag == "div" and "cell_output" in node.classes:
            text = node.all_text()
            if not text.strip() and not _has_media(node):
                problems.append(Problem(rel, "empty-figure", "empty output area of a code cell"))
            for match in _EMPTY_MPL.finditer(text):
                problems.append(Problem(rel, "empty-figure", f"figure shown as text only: {match.group(0)}"))
    notes = [f"{rel}: {unlabelled} figure image(s) in outputs without alt text"] if unlabelled else []
    return problems, notes


def _ancestors(node: _Node):
    node = node.parent
    while node is not None:
        yield node
        node = node.parent


# --------------------------------------------------------------------------- the browser


class BrowserError(RuntimeError):
    """Chromium could not be started or stopped answering."""


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium/Chrome executable: ``explicit``, ``$BRAINATTR_CHROMIUM``, then the PATH."""
    for candidate in (explicit, os.environ.get("BRAINATTR_CHROMIUM")):
        if candidate:
            found = shutil.which(candidate)
            if found:
                return found
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (no websocket, no port).

    ``call`` sends a command and returns its result; every event received meanwhile is appended to
    ``events`` (dicts with ``method``, ``params`` and the ``sessionId`` of the page they belong to).
    """

    def __init__(self, executable: str, timeout: float = 60.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._id = 0
        self._buffer = b""
        self._profile = tempfile.mkdtemp(prefix="brainattr-chromium-")
        to_child_r, self._write = os.pipe()
        self._read, from_child_w = os.pipe()
        # the child's ends, moved to fds >= 10 so that the shell can put them on 3 and 4
        child_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        flags = ["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--mute-audio",
                 "--hide-scrollbars", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "--force-device-scale-factor=1",
                 f"--user-data-dir={self._profile}", "about:blank"]
        self._log = open(Path(self._profile) / "chromium.log", "w+b")
        try:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-', "chromium",
                 executable, *flags],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, pass_fds=(child_r, child_w))
        finally:
            os.close(child_r)
            os.close(child_w)
        try:
            self.version = self.call("Browser.getVersion", timeout=timeout)["product"]
        except Exception as exc:
            self.close()
            raise BrowserError(f"Chromium ({executable}) did not start: {exc}\n{self.log_tail()}") from None

    def log_tail(self, n: int = 2000) -> str:
        try:
            self._log.flush()
            return (Path(self._profile) / "chromium.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write, data):]
        return self._id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._read], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (status {self.process.poll()})\n{self.log_tail()}")
                self._buffer += chunk
            elif self.process.poll() is not None:
                raise BrowserError(f"Chromium exited (status {self.process.returncode})\n{self.log_tail()}")
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send a DevTools command; return its result (raise :class:`BrowserError` on an error answer)."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def wait_for(self, predicate, since: int = 0, timeout: float = 30.0) -> dict | None:
        """The first event from index ``since`` on that satisfies ``predicate``; None on timeout."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.events):
                if predicate(self.events[i]):
                    return self.events[i]
                i += 1
            try:
                self._receive(deadline)
            except TimeoutError:
                return None

    def pump(self, seconds: float) -> None:
        """Receive events for ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._receive(deadline)
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                try:
                    self._send("Browser.close")
                    self.process.wait(timeout=10)
                except Exception:
                    pass
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        except AttributeError:  # never started
            pass
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
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
(async () => {
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
})()
"""


def _event_problems(rel: str, events: list[dict], session: str, base: str) -> list[Problem]:
    """JavaScript errors and failed or external resource loads among a page's DevTools events."""
    problems, urls = [], {}
    for event in events:
        if event.get("sessionId") != session:
            continue
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
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            where = f" at {details.get('url', '')[len(base):]}:{details.get('lineNumber', 0) + 1}" if details.get(
                "url") else ""
            problems.append(Problem(rel, "js-error", f"uncaught {text.splitlines()[0] if text else '?'}{where}"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            problems.append(Problem(rel, "js-error", f"console.{params['type']}: {text[:300]}"))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                problems.append(Problem(rel, "js-error", f"{entry.get('source')}: {entry.get('text', '')[:300]}"))
    return problems


def _idle(browser: Chromium, session: str, since: int, quiet: float = 0.4, limit: float = 15.0) -> None:
    """Wait until the page has had no request in flight for ``quiet`` seconds (at most ``limit``)."""
    deadline = time.monotonic() + limit
    last_change = time.monotonic()
    seen = since
    pending: set = set()
    while time.monotonic() < deadline:
        browser.pump(0.1)
        for event in browser.events[seen:]:
            if event.get("sessionId") != session:
                continue
            method, rid = event["method"], event.get("params", {}).get("requestId")
            if method == "Network.requestWillBeSent":
                pending.add(rid)
                last_change = time.monotonic()
            elif method in ("Network.loadingFinished", "Network.loadingFailed"):
                pending.discard(rid)
                last_change = time.monotonic()
        seen = len(browser.events)
        if not pending and time.monotonic() - last_change >= quiet:
            return


def _screenshot(browser: Chromium, session: str, path: Path) -> Path:
    data = browser.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))
    return path


def _landing(root: Path) -> str:
    """The page a reader lands on: index.html, or where its redirect leads."""
    index = Path(root) / "index.html"
    if index.is_file():
        refresh = _meta_refresh(_parse(index))
        hit = _local_target(root, "index.html", refresh) if refresh else None
        if hit and hit[0].is_file():
            return hit[0].relative_to(root).as_posix()
        return "index.html"
    pages = html_pages(root)
    return pages[0].relative_to(root).as_posix() if pages else ""


def _figure_page(root: Path, pages: list[Path]) -> str | None:
    """The first notebook chapter (by path) with an image in a code cell's output."""
    def has_figure(page):
        return any(n.tag == "img" and any("cell_output" in a.classes for a in _ancestors(n)) for n in _parse(page).iter())
    ranked = sorted(pages, key=lambda p: ("notebooks" not in p.parts, p.as_posix()))
    return next((p.relative_to(root).as_posix() for p in ranked if has_figure(p)), None)


def browser_problems(root: Path, pages: list[Path], browser: Chromium, screenshots: Path | None = None,
                     echo=lambda m: None) -> tuple[list[Problem], list[Path]]:
    """Open each page in ``browser``; return the problems seen and the screenshots written."""
    root = Path(root)
    problems: list[Problem] = []
    shots: list[Path] = []
    landing, figure_page = _landing(root), _figure_page(root, pages)
    server = _Server(root)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT[0], "height": VIEWPORT[1],
                                                            "deviceScaleFactor": 1, "mobile": False}, session)
        for page in pages:
            rel = page.relative_to(root).as_posix()
            if _meta_refresh(_parse(page)):
                continue  # a redirect: its target is a page of its own (checked statically)
            echo(f"  {rel}")
            since = len(browser.events)
            answer = browser.call("Page.navigate", {"url": server.base + rel}, session)
            if answer.get("errorText"):
                problems.append(Problem(rel, "missing-file", f"cannot open: {answer['errorText']}"))
                continue
            loaded = browser.wait_for(lambda e: e["method"] == "Page.loadEventFired" and e.get("sessionId") == session,
                                      since, timeout=60)
            if loaded is None:
                problems.append(Problem(rel, "js-error", "the page did not finish loading within 60 s"))
            _idle(browser, session, since)
            result = browser.call("Runtime.evaluate", {"expression": _PAGE_JS, "awaitPromise": True,
                                                       "returnByValue": True}, session, timeout=90)
            _idle(browser, session, since)
            if "exceptionDetails" in result:
                problems.append(Problem(rel, "js-error", f"the checker's script failed: {result['exceptionDetails']}"))
                seen = {}
            else:
                seen = result.get("result", {}).get("value") or {}
            for src in seen.get("broken", []):
                problems.append(Problem(rel, "missing-image", f"image {src!r} did not load (naturalWidth 0)"))
            for caption in seen.get("emptyFigures", []):
                problems.append(Problem(rel, "empty-figure", f"figure with no image ({caption or 'no caption'})"))
            if seen.get("emptyOutputs"):
                problems.append(Problem(rel, "empty-figure", "empty output area of a code cell"))
            for href in seen.get("links", []):
                if href.startswith(server.base):
                    hit = _local_target(root, rel, href, base=server.base)
                    if hit and not hit[0].is_file():
                        problems.append(Problem(rel, "broken-link", f"link {href[len(server.base):]!r}: no such file"))
                    elif hit and hit[1] and hit[0].suffix == ".html" and hit[1] not in _anchors(hit[0]):
                        problems.append(Problem(rel, "broken-link", f"link {href[len(server.base):]!r}: no such anchor"))
            if seen.get("math") and not seen.get("typeset"):
                why = "MathJax did not load" if not seen.get("mathjax") else "MathJax typeset nothing"
                problems.append(Problem(rel, "math", f"{seen['math']} math element(s) not rendered ({why})"))
            problems += _event_problems(rel, browser.events[since:], session, server.base)
            if screenshots is not None and rel == landing:
                shots.append(_screenshot(browser, session, Path(screenshots) / "landing.png"))
            if screenshots is not None and rel == figure_page:
                browser.call("Runtime.evaluate", {"expression": "document.querySelector('div.cell_output img')"
                                                                ".scrollIntoView({block: 'center'})"}, session)
                browser.pump(0.3)
                shots.append(_screenshot(browser, session, Path(screenshots) / f"figure-{Path(rel).stem}.png"))
    finally:
        server.close()
    return problems, shots


# --------------------------------------------------------------------------- entry points


def check_book(root: Path | str = "_build/html", screenshots: Path | str | None = "build/screenshots",
               browser: bool = True, chromium: str | None = None, echo=lambda m: None) -> Report:
    """Check every page of the built book in ``root``; see the module docstring for what counts.

    With ``browser`` (default) Chromium must be found (:func:`find_chromium`), else
    :class:`BrowserError`; ``browser=False`` runs the static checks only.
    """
    root = Path(root).resolve()
    if not (root / "index.html").is_file() and not html_pages(root):
        raise FileNotFoundError(f"No built book in {root} (build it with `make book` or `python -m brainattr book`).")
    _parse.cache_clear()
    _anchors.cache_clear()
    pages = html_pages(root)
    report = Report(root=root, pages=[p.relative_to(root).as_posix() for p in pages])
    for page in pages:
        found, notes = static_problems(root, page)
        for problem in found:
            report.add(problem)
        report.notes += notes
    if browser:
        executable = find_chromium(chromium)
        if executable is None:
            raise BrowserError("No Chromium found (tried $BRAINATTR_CHROMIUM, " + ", ".join(CHROMIUM_NAMES) +
                               "). Debian: apt-get install chromium; or use --static-only.")
        with Chromium(executable) as chrome:
            report.browser = chrome.version
            found, report.screenshots = browser_problems(root, pages, chrome,
                                                         Path(screenshots) if screenshots else None, echo)
        for problem in found:
            report.add(problem)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check-book`` options (used by :mod:`brainattr.cli`)."""
    parser.add_argument("html", nargs="?", default="_build/html", help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", default="build/screenshots",
                        help="folder for the screenshots (default: build/screenshots)")
    parser.add_argument("--static-only", action="store_true", help="no browser: links, files and figures only")
    parser.add_argument("--chromium", default=None, help="the Chromium/Chrome executable (default: found on PATH)")


def main(args: argparse.Namespace) -> int:
    """Run the check from parsed ``check-book`` arguments; 0 if no problem, 1 otherwise."""
    try:
        report = check_book(args.html, args.screenshots, browser=not args.static_only, chromium=args.chromium,
                            echo=lambda m: print(m, flush=True))
    except (BrowserError, FileNotFoundError) as exc:
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1
