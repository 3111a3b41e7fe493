"""WordNet semantic categories: the simulated brain's semantic space, smooth in meaning.

The simulated voxels' semantic drivers (:func:`brainattr.data.simulate.word_drivers`) are built
from WordNet 3.0 (Miller 1995), in the spirit of the Gallant lab's WordNet features (Huth et al.
2012): each content word is labelled with its most frequent sense (synset) and every
hypernym above it, and its semantic vector is the sum of a fixed random vector per label. Words
sharing ancestors ("dog" and "cat" share *carnivore*, *mammal*, *animal*, ...) get similar vectors,
so the semantic drive varies smoothly over a semantic space that a language model can know from
text. It never comes from the attributed model's own embeddings (that would be circular).

WordNet is read with nltk's reader from Debian's ``wordnet-base`` package (``/usr/share/wordnet``)
or from the folder in ``$BRAINATTR_WORDNET``. Debian's layout lacks the ``lexnames`` file nltk
reads (the 45 lexicographer-file names of WordNet 3.0, fixed by its documentation, lexnames(5WN)),
so the reader is given them here.
"""
from __future__ import annotations

import functools
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..cache import atomic_path, cache_dir, cache_key
from ..schema import DataError

#: Environment variable naming a WordNet 3.0 ``dict`` folder (default: Debian's ``/usr/share/wordnet``).
WORDNET_ENV = "BRAINATTR_WORDNET"
DEFAULT_WORDNET = "/usr/share/wordnet"

#: WordNet 3.0's lexicographer files, in the order of their numbers (lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)

#: spaCy universal POS -> WordNet part of speech. Proper nouns get none: names are the discourse drivers.
WORDNET_POS = {"NOUN": "n", "VERB": "v", "ADJ": "a", "ADV": "r"}


def wordnet_folder() -> Path:
    """The WordNet 3.0 ``dict`` folder: ``$BRAINATTR_WORDNET`` or Debian's ``/usr/share/wordnet``."""
    return Path(os.environ.get(WORDNET_ENV) or DEFAULT_WORDNET).expanduser()


@functools.lru_cache(maxsize=2)
def _reader(folder: str):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    lexnames = "".join(f"{i:02d}\t{name}\t0\n" for i, name in enumerate(LEXNAMES))

    class _DictFolderReader(WordNetCorpusReader):
        def open(self, fileid):
            # Debian ships no lexnames file; its content is fixed by WordNet 3.0's documentation
            return io.StringIO(lexnames) if fileid == "lexnames" else super().open(fileid)

        def map_wn(self, version="wordnet"):
            return None  # the Open Multilingual WordNet mapping needs nltk_data; unused here

    if folder not in nltk.data.path:  # nltk only opens files under its data path
        nltk.data.path.insert(0, folder)
    with warnings.catch_warnings():  # "multilingual functions are not available": not used here
        warnings.simplefilter("ignore", UserWarning)
        return _DictFolderReader(folder, None)


def wordnet_reader():
    """nltk's WordNet reader over :func:`wordnet_folder` (cached).

    Raises
    ------
    DataError
        When the folder holds no WordNet 3.0 database, naming how to install it.
    """
    folder = wordnet_folder()
    if not (folder / "data.noun").is_file() or not (folder / "index.noun").is_file():
        raise DataError(f"WordNet 3.0 was not found in {folder} (no data.noun/index.noun): the simulated subjects' "
                        "semantic drivers need it. Install Debian's wordnet-base (`sudo apt-get install "
                        f"wordnet-base`, `make install` tries this) or set ${WORDNET_ENV} to a WordNet 3.0 dict "
                        "folder; or simulate with semantics='random' (independent vectors per lemma).")
    return _reader(str(folder))


#: Weight lost per step up the hypernym hierarchy: generic ancestors (*entity*, *object*) are shared
#: by most nouns, so they weigh less than the word's own, specific labels.
HYPERNYM_DECAY = 0.7
#: Weight of the word's lexicographer file (*noun.person*, *verb.motion*, ...), a broad category.
LEXNAME_WEIGHT = 0.5
#: Bump when the labels of a word change for the same WordNet: stored label tables are then rebuilt.
LABELS_FORMAT = 1


def wordnet_categories(lemma: str, upos: str) -> dict[str, float]:
    """WordNet labels of a word with their weights: its most frequent synset, its hypernyms, its lexicographer file.

    A hypernym ``d`` steps above the synset weighs ``HYPERNYM_DECAY ** d``. Adjectives (which have
    no hypernyms) also take the head of their cluster and the noun they are an attribute of (with
    its hypernyms); adverbs take the adjectives they derive from; these related synsets weigh
    ``HYPERNYM_DECAY`` times less than the word's own.

    Parameters
    ----------
    lemma : str
    upos : str
        spaCy universal POS; only NOUN, VERB, ADJ and ADV have WordNet labels.

    Returns
    -------
    dict of str -> float
        Synset names (``"dog.n.01"``) and a ``"lex:"``-prefixed lexicographer file, with their weights;
        empty when the word is not in WordNet.
    """
    return dict(_categories(str(wordnet_folder()), lemma, upos))


@functools.lru_cache(maxsize=None)
def _categories(folder: str, lemma: str, upos: str) -> tuple:
    """:func:`wordnet_categories` as (label, weight) pairs, once per word and WordNet folder (every subject reads them)."""
    pos = WORDNET_POS.get(upos)
    if pos is None:
        return ()
    wn = wordnet_reader()
    synsets = wn.synsets(lemma.lower().replace(" ", "_"), pos)
    if not synsets:
        return ()
    first = synsets[0]
    related = []
    if pos == "a":
        related += first.similar_tos() if first.pos() == "s" else []
        related += first.attributes()
    elif pos == "r":
        related += [p.synset() for lem in first.lemmas() for p in lem.pertainyms()]
    labels: dict[str, float] = {}
    for synset, weight in [(first, 1.0)] + [(r, HYPERNYM_DECAY) for r in related]:
        for above, steps in synset.hypernym_distances():  # the synset itself at distance 0
            w = weight * HYPERNYM_DECAY ** steps
            labels[above.name()] = max(w, labels.get(above.name(), 0.0))
    labels[f"lex:{first.lexname()}"] = LEXNAME_WEIGHT
    return tuple(labels.items())


def wordnet_vectors(lemmas, upos, seed: int, dim: int, label_vector) -> np.ndarray:
    """Semantic vectors: per word, the normalised weighted sum of one fixed random vector per WordNet label.

    Parameters
    ----------
    lemmas, upos : sequence of str, length n_words
    seed : int
    dim : int
    label_vector : callable (label: str, seed: int, dim: int) -> array of shape (dim,)
        The fixed random vector of a label (shared by all subjects).

    Returns
    -------
    vectors : array of float64, shape (n_words, dim)
        Unit-norm rows; zero for words without WordNet labels.
    """
    keys = [(str(lem).lower(), str(p)) for lem, p in zip(lemmas, upos)]
    labels = stored_categories(sorted(set(keys)))
    out = np.zeros((len(keys), dim))
    vectors: dict = {}
    for i, key in enumerate(keys):
        if key not in vectors:
            v = sum((w * label_vector(lab, seed, dim) for lab, w in labels[key].items()), np.zeros(dim))
            norm = np.linalg.norm(v)
            vectors[key] = v / norm if norm > 0 else v
        out[i] = vectors[key]
    return out


def stored_categories(keys) -> dict:
    """:func:`wordnet_categories` of many words, read from the cache when this WordNet labelled them before.

    Opening WordNet and labelling a text's words takes ~5 s on 2 CPU cores, and every notebook
    simulates the same subjects; the table is stored once (``<cache>/wordnet/<key>.json``, written
    atomically), keyed by the words, the WordNet folder and its ``data.*`` files' sizes and times,
    :data:`HYPERNYM_DECAY`, :data:`LEXNAME_WEIGHT` and :data:`LABELS_FORMAT`.

    Parameters
    ----------
    keys : sequence of (str, str)
        (lower-case lemma, spaCy universal POS) pairs.

    Returns
    -------
    dict of (str, str) -> dict of str -> float
    """
    folder = wordnet_folder()
    files = {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in sorted(folder.glob("data.*"))}
    key = cache_key(words=[list(k) for k in keys], folder=str(folder.resolve()), files=files, decay=HYPERNYM_DECAY,
                    lexname=LEXNAME_WEIGHT, format=LABELS_FORMAT)
    path = cache_dir("wordnet") / f"{key}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return {(lem, p): dict(labels) for lem, p, labels in stored}
    table = {k: wordnet_categories(*k) for k in keys}
    with atomic_path(path) as tmp:
        # labels in their own order: the vectors are sums over them, so the order fixes the last bits
        tmp.write_text(json.dumps([[lem, p, list(labels.items())] for (lem, p), labels in table.items()]))
    return table
