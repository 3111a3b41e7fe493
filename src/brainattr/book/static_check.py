"""Checks of the built HTML that need no browser: the page tree, local links and anchors, images, figures."""
from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

#: Output folders of Sphinx that hold no pages of their own.
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", ".doctrees"}


_MEDIA = {"img", "svg", "canvas", "object", "iframe", "video", "picture", "embed"}


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr"}


_EMPTY_MPL = re.compile(r"<(?:matplotlib\.figure\.)?Figure(?: size \d+x\d+ with \d+ Axes| at 0x[0-9a-f]+)>")


@dataclass(frozen=True)
class Problem:
    """One problem on one page.

    Attributes
    ----------
    page : str
        Path of the page, relative to the book's root folder.
    kind : str
        ``missing-image``, ``broken-link``, ``empty-figure``, ``missing-file``, ``network``,
        ``js-error`` or ``math`` (see the module docstring).
    detail : str
        What exactly is wrong, for a person.
    """

    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


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
def parse_html(path: Path) -> _Node:
    builder = _TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8", errors="replace"))
    builder.close()
    return builder.root


@functools.lru_cache(maxsize=512)
def page_anchors(path: Path) -> frozenset[str]:
    names = set()
    for node in parse_html(path).iter():
        for key in ("id", "name"):
            if node.attrs.get(key) and (key == "id" or node.tag == "a"):
                names.add(node.attrs[key])
    return frozenset(names)


def html_pages(root: Path) -> list[Path]:
    """Every HTML page of the built book.

    Parameters
    ----------
    root : Path
        The built book's root folder.

    Returns
    -------
    list of Path
        The ``*.html`` files under ``root``, sorted; Sphinx's asset folders (:data:`SKIP_DIRS`) skipped.
    """
    root = Path(root)
    return sorted(p for p in root.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))


BASE_URL = "http://book.invalid/"


def local_target(root: Path, page: str, ref: str, base: str = BASE_URL) -> tuple[Path, str] | None:
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


def meta_refresh(tree: _Node) -> str | None:
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
    """What is wrong in the HTML source of one page, found without a browser.

    Parameters
    ----------
    root : Path
        The built book's root folder (links are resolved inside it).
    page : Path
        The page, a file under ``root``.

    Returns
    -------
    problems : list of Problem
        Broken links, redirects and anchors; missing images, scripts and stylesheets; empty figures,
        ``<img>`` without ``src``, empty output areas and figures shown only as their text.
    notes : list of str
        How many figure images in outputs lack alt text (not a problem).
    """
    root = Path(root)
    rel = page.relative_to(root).as_posix()
    tree = parse_html(page)
    problems: list[Problem] = []
    unlabelled = 0

    def check_link(ref: str, kind: str, what: str) -> None:
        hit = local_target(root, rel, ref)
        if hit is None:
            return
        target, fragment = hit
        if not target.is_file():
            problems.append(Problem(rel, kind, f"{what} {ref!r}: no file {target.relative_to(root).as_posix()}"))
        elif fragment and target.suffix == ".html" and fragment not in page_anchors(target):
            problems.append(Problem(rel, kind, f"{what} {ref!r}: no anchor #{fragment} in "
                                               f"{target.relative_to(root).as_posix()}"))

    refresh = meta_refresh(tree)
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
            in_output = any("cell_output" in a.classes or a.tag == "figure" for a in ancestors(node))
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


def ancestors(node: _Node):
    node = node.parent
    while node is not None:
        yield node
        node = node.parent
