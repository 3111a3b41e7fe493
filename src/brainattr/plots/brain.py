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
