"""Download the real datasets' public files into the data root with pooch (``python -m brainattr download``).

Each dataset that can be downloaded lists its files in :data:`DOWNLOADS` (name -> function of the
subjects returning (candidate URLs, path under the data root) pairs). Nothing here runs at import
or in the tests.
"""
from __future__ import annotations

from ..schema import DataError
from ._common import data_root
from .harry_potter import HP_DRIVE_URL, hp_download_list
from .moth import moth_download_list

#: Dataset name -> its file list (:func:`~brainattr.data.harry_potter.hp_download_list`, ...).
DOWNLOADS = {"hp": hp_download_list, "moth": moth_download_list}


def download_list(name, subjects=None) -> list:
    """Files ``python -m brainattr download`` fetches, as (list of candidate URLs, path under the data root).

    Parameters
    ----------
    name : {"hp", "moth"}
    subjects : sequence or None
        Default: all subjects of the release.

    Returns
    -------
    list of (list of str, str)
    """
    if name not in DOWNLOADS:
        raise DataError(f"no download for {name!r}; available: hp (CMU release), moth. The preprocessed HP release is "
                        f"on Google Drive ({HP_DRIVE_URL}) and is downloaded by hand.")
    return DOWNLOADS[name](subjects)


def download(name, data_home=None, subjects=None, progress=True) -> list:
    """Download a dataset's files into the data root with pooch (never called at import or in tests).

    Files already present are kept. No checksums are published for these files, so none are
    checked; pooch logs the SHA-256 of what it downloads.

    Parameters
    ----------
    name : {"hp", "moth"}
    data_home : str or Path or None
        Default :func:`brainattr.data.data_root`.
    subjects : sequence or None
        Default: all subjects of the release.
    progress : bool
        Show pooch's progress bars.

    Returns
    -------
    list of Path
    """
    try:
        import pooch  # deferred: pooch is optional and only downloading needs it
    except ImportError:
        raise DataError("downloading needs pooch: `pip install 'pooch>=1.8'` (or `pip install -e '.[download]'`), "
                        "or fetch the files by hand (book chapter 'Use the real data').") from None
    root = data_root(data_home)
    out = []
    for urls, rel in download_list(name, subjects):
        target = root / rel
        if target.exists():
            out.append(target)
            continue
        errors = []
        for url in urls:
            try:
                pooch.retrieve(url, known_hash=None, fname=target.name, path=target.parent, progressbar=progress)
                break
            except Exception as err:  # network errors differ by backend; try the next copy
                errors.append(f"{url}: {err}")
        else:
            raise DataError(f"could not download {rel}:\n  " + "\n  ".join(errors))
        out.append(target)
    return out
