"""Extract the built-in stimulus text from Debian's ``r-cran-janeaustenr`` package.

The built-in stimulus is the opening chapters of Jane Austen's *Pride and Prejudice*
(1813, public domain), taken whole chapters at a time until at least ``--min-words``
words are reached (the paper's Harry Potter chapter has 5,176 words).

Reproduce the shipped file with::

    apt-get download r-cran-janeaustenr
    dpkg -x r-cran-janeaustenr_*_all.deb janeaustenr/
    pip install rdata
    python scripts/extract_stimulus.py janeaustenr/ src/brainattr/data/pride_and_prejudice_ch1-5.txt

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


def first_chapters(lines, min_words):
    """Paragraphs of whole chapters from chapter 1 on, until ``min_words`` words are reached.

    Returns (paragraphs, n_chapters). Italic markers (``_word_``) are removed.
    """
    chapters, current, para = [], None, []
    for line in lines + [""]:
        if re.fullmatch(r"Chapter \d+", line.strip()):
            current = []
            chapters.append(current)
            continue
        if current is None:
            continue  # title page
        if line.strip():
            para.append(line.strip().replace("_", ""))
        elif para:
            current.append(" ".join(para))
            para = []
    out, n_words = [], 0
    for k, chapter in enumerate(chapters, start=1):
        out.extend(chapter)
        n_words += sum(len(p.split()) for p in chapter)
        if n_words >= min_words:
            return out, k
    raise ValueError(f"the novel has fewer than {min_words} words")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_root", help="folder where the .deb was unpacked with dpkg -x")
    parser.add_argument("output", help="text file to write (one paragraph per line)")
    parser.add_argument("--min-words", type=int, default=5176)
    args = parser.parse_args()
    paragraphs, n_chapters = first_chapters(read_novel(args.package_root), args.min_words)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(paragraphs) + "\n")
    os.replace(tmp, args.output)
    n_words = sum(len(p.split()) for p in paragraphs)
    print(f"wrote {args.output}: chapters 1-{n_chapters}, {len(paragraphs)} paragraphs, {n_words} words")


if __name__ == "__main__":
    main()
