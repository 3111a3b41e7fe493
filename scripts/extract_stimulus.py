"""Extract the built-in stimulus texts from Debian's ``r-cran-janeaustenr`` package.

Two texts, both public domain:

- ``pride_and_prejudice_ch1-5.txt`` (the ``"builtin"`` dataset): the opening chapters of Jane
  Austen's *Pride and Prejudice* (1813), taken whole chapters at a time until at least
  ``--min-words`` words are reached (the paper's Harry Potter chapter has 5,176 words); one
  paragraph per line.
- ``emma_vol1_ch1-11.txt`` (the ``"emma"`` dataset, the paper's App. D design): the opening of
  each of the first ``--chapters`` chapters of *Emma* (1815), whole paragraphs until at least
  ``--story-words`` words per chapter; each chapter (a "story") starts with a header line
  ``# Chapter N``, then one paragraph per line.

Reproduce the shipped files with::

    apt-get download r-cran-janeaustenr
    dpkg -x r-cran-janeaustenr_*_all.deb janeaustenr/
    pip install rdata
    python scripts/extract_stimulus.py janeaustenr/ src/brainattr/data/pride_and_prejudice_ch1-5.txt
    python scripts/extract_stimulus.py janeaustenr/ src/brainattr/data/emma_vol1_ch1-11.txt \
        --novel emma --chapters 11 --story-words 1000

The R lazy-load database (``Rdata.rdx`` index + ``Rdata.rdb`` blobs) is read with the
PyPI package ``rdata``; each blob is a 4-byte big-endian length followed by a
zlib-compressed R serialization of a character vector (one element per text line).
"""
import argparse
import gzip
import os
import re
import zlib

RDATA = "usr/lib/R/site-library/janeaustenr/data/Rdata"
#: A chapter heading line: "Chapter 1" (Pride and Prejudice) or "CHAPTER I" (Emma).
CHAPTER_HEADING = re.compile(r"chapter [0-9ivxlc]+", flags=re.I)
#: A volume heading line ("VOLUME I", Emma): not part of any chapter.
VOLUME_HEADING = re.compile(r"volume [0-9ivxlc]+", flags=re.I)


def read_novel(package_root, name="prideprejudice"):
    """Return the lines of one novel as a list of str."""
    import rdata

    base = os.path.join(package_root, RDATA)
    with open(base + ".rdx", "rb") as fh:
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(fh.read())))
    offset, length = (int(v) for v in index["variables"][name])
    with open(base + ".rdb", "rb") as fh:
        fh.seek(offset)
        blob = fh.read(length)
    return [str(s) for s in rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(blob[4:])))]


def chapter_paragraphs(lines):
    """Paragraphs of every chapter, list (one per chapter) of lists of str.

    The title page before the first chapter heading and volume headings are skipped; a paragraph
    is a run of non-empty lines, joined with spaces. Italic markers (``_word_``) are removed.
    """
    chapters, current, para = [], None, []
    for line in lines + [""]:
        heading = CHAPTER_HEADING.fullmatch(line.strip()) or VOLUME_HEADING.fullmatch(line.strip())
        if heading or not line.strip():
            if para and current is not None:
                current.append(" ".join(para))
            para = []
        if CHAPTER_HEADING.fullmatch(line.strip()):
            current = []
            chapters.append(current)
        elif current is not None and not heading and line.strip():
            para.append(line.strip().replace("_", ""))
    return chapters


def first_chapters(lines, min_words):
    """Paragraphs of whole chapters from chapter 1 on, until ``min_words`` words are reached.

    Returns (paragraphs, n_chapters).
    """
    out, n_words = [], 0
    for k, chapter in enumerate(chapter_paragraphs(lines), start=1):
        out.extend(chapter)
        n_words += sum(len(p.split()) for p in chapter)
        if n_words >= min_words:
            return out, k
    raise ValueError(f"the novel has fewer than {min_words} words")


def chapter_openings(lines, n_chapters, story_words):
    """The opening of each of the first ``n_chapters`` chapters: whole paragraphs until ``story_words`` words.

    Returns a list of ``n_chapters`` lists of paragraphs.
    """
    chapters = chapter_paragraphs(lines)
    if len(chapters) < n_chapters:
        raise ValueError(f"the novel has {len(chapters)} chapters, fewer than {n_chapters}")
    stories = []
    for k, chapter in enumerate(chapters[:n_chapters], start=1):
        kept, n = [], 0
        for p in chapter:
            if n >= story_words:
                break
            kept.append(p)
            n += len(p.split())
        if n < story_words:
            raise ValueError(f"chapter {k} has {n} words, fewer than --story-words {story_words}")
        stories.append(kept)
    return stories


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_root", help="folder where the .deb was unpacked with dpkg -x")
    parser.add_argument("output", help="text file to write (one paragraph per line)")
    parser.add_argument("--novel", default="prideprejudice", help="janeaustenr data set (prideprejudice, emma, ...)")
    parser.add_argument("--min-words", type=int, default=5176, help="whole chapters until this many words")
    parser.add_argument("--chapters", type=int, default=None,
                        help="write the opening of each of this many chapters as stories (# Chapter N headers)")
    parser.add_argument("--story-words", type=int, default=1000, help="with --chapters: words per story (at least)")
    args = parser.parse_args()
    lines = read_novel(args.package_root, args.novel)
    if args.chapters is None:
        paragraphs, n_chapters = first_chapters(lines, args.min_words)
        text = "\n".join(paragraphs) + "\n"
        summary = f"chapters 1-{n_chapters}, {len(paragraphs)} paragraphs"
    else:
        stories = chapter_openings(lines, args.chapters, args.story_words)
        text = "".join(f"# Chapter {k}\n" + "\n".join(s) + "\n" for k, s in enumerate(stories, start=1))
        paragraphs = [p for s in stories for p in s]
        summary = f"openings of chapters 1-{args.chapters}, {len(paragraphs)} paragraphs"
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}: {summary}, {sum(len(p.split()) for p in paragraphs)} words")


if __name__ == "__main__":
    main()
