"""Brain maps: per-voxel values on the MNI grid, glass-brain views."""
from __future__ import annotations

import numpy as np


def voxel_image(values, coords, reference=None):
    """Put per-voxel values into a 3-D MNI image (NaN-free: empty voxels are 0), for nilearn plots.

    Parameters
    ----------
    values : array of shape (n_voxels,)
    coords : array of shape (n_voxels, 3)
        MNI coordinates in mm.
    reference : nibabel image or None
        Grid to use; default nilearn's 3 mm MNI152 brain mask.

    Returns
    -------
    nibabel.Nifti1Image
    """
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    ref = reference if reference is not None else load_mni152_brain_mask(resolution=3)
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(ref.affine), np.asarray(coords))).astype(int)
    data = np.zeros(ref.shape[:3], dtype=np.float32)
    inside = np.all((ijk >= 0) & (ijk < np.array(ref.shape[:3])), axis=1)
    data[tuple(ijk[inside].T)] = np.asarray(values, dtype=np.float32)[inside]
    return nib.Nifti1Image(data, ref.affine)


def glass_brain(values, coords, title=None, cmap="RdBu_r", vmax=None, threshold=1e-6, colorbar=True, figure=None,
                axes=None):
    """Glass-brain views (left, top, right) of per-voxel values, symmetric around 0.

    Parameters
    ----------
    values : array of shape (n_voxels,)
    coords : array of shape (n_voxels, 3)
        MNI coordinates in mm (:func:`voxel_image`).
    title : str or None
    cmap : str
    vmax : float or None
        Colour range ``[-vmax, vmax]``; default the 99th percentile of ``|values|``.
    threshold : float
        Values with a smaller magnitude are not drawn.
    colorbar : bool
    figure, axes : matplotlib Figure or Axes, optional
        Where to draw (nilearn's arguments).

    Returns
    -------
    nilearn.plotting.displays.LZRProjector
        Its ``axes`` dict holds the ``"l"``, ``"z"`` and ``"r"`` views.
    """
    from nilearn import plotting

    values = np.asarray(values, dtype=float)
    vmax = float(np.percentile(np.abs(values), 99)) if vmax is None else float(vmax)
    return plotting.plot_glass_brain(voxel_image(values, coords), display_mode="lzr", plot_abs=False, cmap=cmap,
                                     vmin=-vmax, vmax=vmax, colorbar=colorbar, threshold=threshold, title=title,
                                     figure=figure, axes=axes)


def marker_map(values, coords, title=None, cmap="viridis", vmin=None, vmax=None, node_size=None, colorbar=True,
               figure=None, axes=None):
    """Glass-brain views (left, top, right) with one marker per voxel or parcel, coloured by its value.

    Markers suit parcels (one per parcel, at its centroid, :func:`brainattr.data.parcellate`) and
    sparse voxel samples alike, where :func:`glass_brain`'s one-voxel blobs would be hard to see.

    Parameters
    ----------
    values : array of float, shape (n_voxels,)
        NaN marks a voxel with no value: it is not drawn.
    coords : array of float, shape (n_voxels, 3)
        MNI coordinates in mm (``Dataset.voxel_coords``).
    title : str or None
    cmap : str
    vmin, vmax : float or None
        Colour range; default the 1st and 99th percentiles of the finite values.
    node_size : float or None
        Marker area in points²; default 8 for more than 100 markers, else 40.
    colorbar : bool
    figure, axes : matplotlib Figure or Axes, optional
        Where to draw (nilearn's arguments).

    Returns
    -------
    nilearn.plotting.displays.LZRProjector
    """
    from nilearn import plotting

    values, coords = np.asarray(values, dtype=float), np.asarray(coords, dtype=float)
    if values.shape != (coords.shape[0],) or coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"values must have shape (n_voxels,) and coords (n_voxels, 3); got {values.shape} and "
                         f"{coords.shape}.")
    shown = np.isfinite(values) & np.isfinite(coords).all(axis=1)
    if not shown.any():
        raise ValueError("no voxel has both a finite value and MNI coordinates: nothing to draw.")
    lo, hi = np.percentile(values[shown], [1, 99])
    vmin = float(lo) if vmin is None else float(vmin)
    vmax = float(hi) if vmax is None else float(vmax)
    if vmax <= vmin:  # one value everywhere: widen the range so nilearn can draw a colour bar
        vmin, vmax = vmin - 0.5, vmin + 0.5
    size = node_size if node_size is not None else (8 if shown.sum() > 100 else 40)
    return plotting.plot_markers(values[shown], coords[shown], node_size=size, node_cmap=cmap, node_vmin=vmin,
                                 node_vmax=vmax, display_mode="lzr", colorbar=colorbar, title=title, figure=figure,
                                 axes=axes, alpha=0.9)


def brain_maps(maps, coords, cmaps=None, figsize=None):
    """Several per-voxel maps of one subject, one row of glass-brain views each.

    Parameters
    ----------
    maps : dict of str -> array of float, shape (n_voxels,)
        Title -> values (NaN: not drawn), e.g. ``{"held-out r": enc.scores, "centre of mass of BA
        attribution (words back)": ...}``.
    coords : array of float, shape (n_voxels, 3)
        MNI coordinates in mm.
    cmaps : dict of str -> str, optional
        Title -> colour map (default ``"viridis"``).
    figsize : (float, float) or None
        Default 10 inches wide, 3.2 per map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    cmaps = dict(cmaps or {})
    fig, axes = plt.subplots(len(maps), 1, figsize=figsize or (10, 3.2 * len(maps)), squeeze=False)
    for ax, (title, values) in zip(axes[:, 0], maps.items()):
        marker_map(values, coords, title=title, cmap=cmaps.get(title, "viridis"), figure=fig, axes=ax)
    return fig
