"""Chapter 3: attribution against the simulated subjects' planted truth."""
from __future__ import annotations


import numpy as np
import pandas as pd

from ..attribution import AttributionSettings, attribute, voxel_mask
from ..data import as_simulated, true_contributions_table
from ..encoding import encode_subjects
from ..oracle import clean_target_dataset, fit_oracle, in_model_subject, in_model_truth, oracle_tables, with_noise
from ..recovery import recovery_scores


# --------------------------------------------------------------------------------------------
# Chapter 3: attribution against the simulated subjects' planted truth
# --------------------------------------------------------------------------------------------

def truth_tables(datasets, trs, settings=AttributionSettings(), how="l2"):
    """Each simulated subject's planted word truth on ``trs``, in the BA target's units and voxel set.

    Parameters
    ----------
    datasets : list of Dataset
        Simulated subjects.
    trs : array of int
    settings : AttributionSettings
        Its ``voxel_set`` picks the voxels, as for the BA target.
    how : {"l2", "sum"}
        L2 norm over voxels (magnitudes, the default reading) or signed sum (the signed reading).

    Returns
    -------
    dict subject -> pandas.DataFrame
        :func:`brainattr.data.true_contributions_table` with ``units="response_sd"``.
    """
    return {ds.subject: true_contributions_table(ds, trs=trs, voxels=voxel_mask(settings.voxel_set, ds), how=how,
                                                 units="response_sd") for ds in datasets}


def plant_views(datasets, encodings):
    """Each subject and its encoding model restricted to the sparse-plant voxels (``meta["voxel_plant"]``).

    The BA target of such a view is the squared error over the plant voxels only, whose truth is
    a known, sparse set of words (character mentions): what precision@k scores.

    Returns
    -------
    (list of Dataset, list of EncodingResult)
    """
    views, encs = [], []
    for ds, enc in zip(datasets, encodings):
        plant = np.asarray(ds.meta.get("voxel_plant", np.zeros(ds.n_voxels, bool)), dtype=bool)
        if not plant.any():
            raise ValueError(f"{ds.subject} has no sparse-plant voxels (meta['voxel_plant']); simulate with "
                             "plant_share > 0.")
        views.append(ds.select_voxels(plant))
        encs.append(enc.select_voxels(np.flatnonzero(plant)))
    return views, encs


def has_plant(dataset) -> bool:
    """Whether a simulated subject has sparse-plant voxels (``meta["voxel_plant"]``; parcel Datasets have none)."""
    return bool(np.any(dataset.meta.get("voxel_plant", False)))


def ground_truth_targets(datasets, encodings, settings=AttributionSettings(), clean_subject=0):
    """The extra BA attributions of chapter 3's ground-truth checks, as attribution calls.

    Two calls, each a list of subjects for one :func:`brainattr.attribution.attribute` (the LM
    runs once per batch of each):

    - **BA GxI** of one subject's target taken against its clean signal instead of its measured
      response (:func:`brainattr.oracle.clean_target_dataset`), and of every subject's sparse-plant
      view (:func:`plant_views`);
    - **BA Gradient × Activation** at layer L (``"gxa"``: the head's own per-word terms, no way
      back through the LM) of that subject and of the same sparse-plant views: the ladder's rung
      that tells the LM's features from the backward pass through it.

    A sweep's jobs write the same tables as parts. Subjects without sparse-plant voxels
    (:func:`has_plant`: parcel Datasets, whose parcels average the plant voxels with others) get
    no view.

    Returns
    -------
    list of (kind, datasets, encodings, settings)
        ``kind`` names the first subject's target (``"clean"`` for the GxI call, ``"measured"`` for
        the Gradient × Activation one); the plant views follow it.
    """
    planted = [k for k, ds in enumerate(datasets) if has_plant(ds)]
    views, view_encs = plant_views([datasets[k] for k in planted], [encodings[k] for k in planted])
    first, enc = datasets[clean_subject], encodings[clean_subject]
    ba = settings.replace(tasks=("ba",))
    return [("clean", [clean_target_dataset(first)] + views, [enc] + view_encs, ba.replace(methods=("gxi",))),
            ("measured", [first] + views, [enc] + view_encs, ba.replace(methods=("gxa",)))]


def ground_truth_attributions(lm, datasets, encodings, layer, trs, settings=AttributionSettings(), clean_subject=0):
    """The extra BA attributions of chapter 3's ground-truth checks (:func:`ground_truth_targets`).

    Returns
    -------
    dict
        ``(kind, method, subject)`` -> table: ``("clean", "gxi", s)`` for ``datasets[clean_subject]``
        against its clean signal; ``("measured", "gxa", s)`` for it against its measured response;
        ``("plant", method, s)`` for every subject with sparse-plant voxels (:func:`has_plant`),
        both methods.
    """
    tables = {}
    for kind, targets, target_encs, ba in ground_truth_targets(datasets, encodings, settings, clean_subject):
        method, = ba.methods
        out = attribute(lm, targets, target_encs, layer, ba, trs=trs)
        tables[(kind, method, targets[0].subject)] = out[0][("ba", method)].to_pandas()
        tables.update({("plant", method, v.subject): o[("ba", method)].to_pandas()
                       for v, o in zip(targets[1:], out[1:])})
    return tables


def recovery_table(sources, truths, plant_sources=None, plant_truths=None, how="abs", n_boot=1000, seed=0,
                   word_classes=None):
    """:func:`brainattr.recovery.recovery_scores` of several sources side by side.

    Parameters
    ----------
    sources : dict name -> (dict subject -> table)
    truths : dict subject -> truth table
    plant_sources : dict name -> (dict subject -> table), optional
        The sources' sparse-plant tables (precision@k), where they have them.
    plant_truths : dict subject -> truth table, optional
    how, n_boot, seed, word_classes
        See :func:`brainattr.recovery.recovery_scores`.

    Returns
    -------
    pandas.DataFrame with a ``source`` and a ``score`` level in its index
    """
    plant_sources = plant_sources or {}
    return pd.concat({name: recovery_scores(tables, {s: truths[s] for s in tables}, plant_sources.get(name),
                                            plant_truths, how=how, n_boot=n_boot, seed=seed,
                                            word_classes=word_classes)
                      for name, tables in sources.items()}, names=["source"])


#: The oracle ladder's rungs: (label, features, encoder fitted on, target), most ideal first.
#: Rungs 0: a subject the oracle's model class generates (:func:`brainattr.oracle.in_model_subject`), scored
#: against its own truth: attributed through its generating head (the positive control), then through a refit.
POSITIVE_CONTROL = "0a. positive control: in-model subject, its generating head, prediction"
IN_MODEL_REFIT = "0b. in-model subject, oracle refit (inner-CV penalties), prediction"
#: Features ``"lm_layer"``: the LM's layer-L states attributed by Gradient × Activation (no way back through
#: the LM); ``"lm"``: its input embeddings by Gradient × Input, the paper's method.
LADDER = (
    ("i. oracle LM, fit on clean signal, prediction", "oracle", "clean", "prediction"),
    ("ii. oracle LM, fit on measured, prediction", "oracle", "measured", "prediction"),
    ("iii. oracle LM, fit on measured, MSE vs clean", "oracle", "measured", "mse_clean"),
    ("iv. oracle LM, fit on measured, MSE vs measured", "oracle", "measured", "mse_measured"),
    ("v. the LM's layer-L states (Gradient × Activation), MSE vs measured", "lm_layer", "measured", "mse_measured"),
    ("vi. the LM, fit on measured, MSE vs clean", "lm", "measured", "mse_clean"),
    ("vii. the LM, fit on measured, MSE vs measured (the pipeline)", "lm", "measured", "mse_measured"),
)


def oracle_ladder(dataset, lm_table, lm_clean_table, trs, settings=AttributionSettings(), inner_folds=5,
                  ig_table=None, lm_plant_table=None, gxa_table=None, gxa_plant_table=None, n_boot=1000, seed=0):
    """Chapter 3's ladder for one subject: where recovery of the planted words is lost.

    Rungs (:data:`LADDER`) go from an oracle language model, whose layer features are the
    simulation's own drivers (:mod:`brainattr.oracle`), fitted on the clean signal and attributing
    its prediction, down to the real pipeline: noise in the fit, the squared-error target (against
    the clean signal, then the measured response), the LM's features (its layer-L states attributed
    by Gradient × Activation, when given), the way back through the LM to its input embeddings (the
    paper's Gradient × Input). A last rung, when given, is Integrated Gradients on the LM (the
    first-order method). Each rung is scored by
    :func:`brainattr.recovery.recovery_scores` against the same truth.

    Parameters
    ----------
    dataset : Dataset
        One simulated subject.
    lm_table, lm_clean_table : attribution tables
        The LM's BA GxI against the measured response and against the clean signal, on ``trs``.
    trs : array of int
    settings : AttributionSettings
        Its ``voxel_set`` is the oracle's too.
    inner_folds : int
    ig_table : attribution table, optional
        The LM's BA IG on some of ``trs``.
    lm_plant_table : attribution table, optional
        The LM's BA GxI of the subject's sparse-plant view (:func:`ground_truth_attributions`): with
        it, the oracle is also fitted on the plant voxels and the oracle's measured-fit rungs and the
        pipeline's get precision@k, the positive control of that score.
    gxa_table, gxa_plant_table : attribution tables, optional
        The LM's BA Gradient × Activation at layer L, against the measured response, of the subject
        and of its sparse-plant view (:func:`ground_truth_attributions`): the rung between the
        oracle's features and the LM's (the LM's features, without the way back through the LM).
        Without them that rung is left out.
    n_boot, seed

    Returns
    -------
    (ladder, tables) : (pandas.DataFrame, dict)
        ``ladder`` indexed by (rung, score); ``tables`` maps each rung to its attribution table.
    """
    voxels = np.flatnonzero(voxel_mask(settings.voxel_set, dataset))
    rows = lm_table[lm_table["tr"].isin(trs)]
    fits = {fit_on: fit_oracle(dataset, voxels, fit_on, inner_folds) for fit_on in ("clean", "measured")}
    oracle = {fit_on: oracle_tables(dataset, enc, voxels, rows) for fit_on, enc in fits.items()}
    lm = {("lm", "mse_measured"): rows, ("lm", "mse_clean"): lm_clean_table[lm_clean_table["tr"].isin(trs)]}
    if gxa_table is not None:
        lm[("lm_layer", "mse_measured")] = gxa_table[gxa_table["tr"].isin(trs)]
    tables = {label: (oracle[fit_on][target] if features == "oracle" else lm[(features, target)])
              for label, features, fit_on, target in LADDER if features == "oracle" or (features, target) in lm}
    if ig_table is not None and len(ig_table):
        tables["viii. the LM, Integrated Gradients, MSE vs measured"] = ig_table
    truth = truth_tables([dataset], trs, settings)[dataset.subject]
    # rungs 0: a subject the oracle's own model class generates, attributed through its generating
    # head (the positive control) and through a refit of the oracle (the fit's own loss)
    subject, generator = in_model_subject(dataset, fits["clean"], voxels)
    in_model = {POSITIVE_CONTROL: generator, IN_MODEL_REFIT: fit_oracle(subject, voxels, "measured", inner_folds)}
    in_model = {label: oracle_tables(subject, enc, voxels, rows, ("prediction",))["prediction"]
                for label, enc in in_model.items()}
    in_model_truth_table = in_model_truth(subject, generator, voxels, rows)
    plant, plant_truth = {}, None
    if lm_plant_table is not None:
        plant_mask = np.asarray(dataset.meta["voxel_plant"], dtype=bool)
        view, plant_voxels = dataset.select_voxels(plant_mask), np.flatnonzero(plant_mask)
        plant_fit = fit_oracle(dataset, plant_voxels, "measured", inner_folds)
        oracle_plant = oracle_tables(dataset, plant_fit, plant_voxels, rows, ("prediction", "mse_measured"))
        # the measured-fit rungs that have a plant table, matched by (features, target) as the rungs' own tables
        on_plant = {**{("oracle", t): table for t, table in oracle_plant.items()},
                    ("lm_layer", "mse_measured"): gxa_plant_table, ("lm", "mse_measured"): lm_plant_table}
        plant = {label: on_plant[(features, target)] for label, features, fit_on, target in LADDER
                 if fit_on == "measured" and on_plant.get((features, target)) is not None}
        plant = {label: t[t["tr"].isin(trs)] for label, t in plant.items()}
        plant_truth = {dataset.subject: truth_tables([view], trs, settings)[dataset.subject]}
    s = dataset.subject
    scored = {label: recovery_scores({s: t}, {s: in_model_truth_table}, n_boot=n_boot, seed=seed)
              for label, t in in_model.items()}
    scored.update({label: recovery_scores({s: t}, {s: truth}, {s: plant[label]} if label in plant else None,
                                          plant_truth, n_boot=n_boot, seed=seed)
                   for label, t in tables.items()})
    return pd.concat(scored, names=["rung"]), {**in_model, **tables}


def _mean_true_r(clean, noisy, voxels) -> float:
    """The voxels' mean correlation between their clean signal (n_trs, n_voxels_sel) and ``noisy``'s responses."""
    return float(np.nanmean([np.corrcoef(clean[:, k], noisy.responses[:, v])[0, 1] for k, v in enumerate(voxels)]))


def noise_sweep(dataset, lm_rows, noise_levels, settings=AttributionSettings(), inner_folds=5, n_boot=1000, seed=0):
    """Recovery against noise: the oracle's squared-error target refitted at each noise level.

    The subject's noise is rescaled (:func:`brainattr.oracle.with_noise`, the same draw), the
    oracle's encoder is refitted, and its BA target (MSE vs the measured response) and prediction
    are attributed and scored. It shows from which noise level on the squared-error target stops
    telling which words drive the voxels, even for a perfect language model.

    Returns
    -------
    pandas.DataFrame with columns ``source`` (``"oracle LM"``), ``noise``, ``target``, ``mean_true_r``
    (the voxels' corr(clean, response)), ``held_out_r`` (the oracle's mean BA) and the word-identity
    ``estimate``, ``ci_low``, ``ci_high``
    """
    voxels = np.flatnonzero(voxel_mask(settings.voxel_set, dataset))
    trs = np.unique(lm_rows["tr"])
    truth = truth_tables([dataset], trs, settings)[dataset.subject]
    clean = as_simulated(dataset).clean[:, voxels]
    out = []
    for noise in noise_levels:
        noisy = with_noise(dataset, noise)
        enc = fit_oracle(noisy, voxels, "measured", inner_folds)
        true_r = _mean_true_r(clean, noisy, voxels)
        for target, table in oracle_tables(noisy, enc, voxels, lm_rows, ("prediction", "mse_measured")).items():
            wi = recovery_scores({dataset.subject: table}, {dataset.subject: truth}, n_boot=n_boot,
                                 seed=seed).loc["word_identity"]
            out.append(dict(source="oracle LM", noise=float(noise), target=target, mean_true_r=float(true_r),
                            held_out_r=float(enc.scores.mean()), estimate=wi["estimate"], ci_low=wi["ci_low"],
                            ci_high=wi["ci_high"]))
    return pd.DataFrame(out)


def lm_noise_sweep(lm, dataset, layer, trs, noise_levels, settings=AttributionSettings(), inner_folds=5, n_boot=1000,
                   seed=0):
    """Recovery against noise for the method itself: the LM's encoder refitted at each noise level, its BA GxI scored.

    As :func:`noise_sweep` (the same noise draw, rescaled), but with the language model's features:
    at each level the subject's encoding model is refitted and BA GxI attributed on ``trs``, for the
    BA target and, with sparse-plant voxels, for the plant's (one pass). At the simulation's own
    noise level both are the chapter's cached tables. It says whether the method recovers the
    planted words once the encoder predicts the voxels well.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : Dataset
        One simulated subject.
    layer : int
    trs : array of int, shape (n_trs,)
    noise_levels : sequence of float
    settings, inner_folds, n_boot, seed
        As for the chapter's attribution and :func:`brainattr.recovery.recovery_scores`.

    Returns
    -------
    pandas.DataFrame
        One row per level: ``source`` (``"the LM (BA GxI)"``), ``noise``, ``target``
        (``"mse_measured"``), ``mean_true_r``, ``held_out_r`` (the encoder's mean over the
        language voxels), word identity ``estimate``, ``ci_low``, ``ci_high``, and on the plant
        ``precision_at_k`` with ``precision_ci_low``, ``precision_ci_high`` and
        ``precision_prior`` (the position prior's), NaN without a plant.
    """
    voxels = np.flatnonzero(voxel_mask(settings.voxel_set, dataset))
    trs = np.asarray(trs, dtype=int)
    truth = truth_tables([dataset], trs, settings)
    clean = as_simulated(dataset).clean[:, voxels]
    plant = has_plant(dataset)
    ba_gxi = settings.replace(tasks=("ba",), methods=("gxi",))
    s, plant_truth, out = dataset.subject, None, []
    for noise in noise_levels:
        noisy = with_noise(dataset, noise)
        encoding, = encode_subjects(lm, [noisy], layer, context=settings.context, pooling=settings.pooling,
                                    inner_folds=inner_folds, progress=False, tr_features=settings.tr_features)
        targets, encodings = [noisy], [encoding]
        if plant:
            views, view_encodings = plant_views([noisy], [encoding])
            targets, encodings = targets + views, encodings + view_encodings
            # the truth is the simulation's, whatever the noise: computed once
            plant_truth = plant_truth or truth_tables(views, trs, settings)
        tables = [o[("ba", "gxi")].to_pandas() for o in attribute(lm, targets, encodings, layer, ba_gxi, trs=trs,
                                                                  progress=False)]
        scores = recovery_scores({s: tables[0]}, truth, {s: tables[1]} if plant else None, plant_truth,
                                 n_boot=n_boot, seed=seed)
        wi = scores.loc["word_identity"]
        row = dict(source="the LM (BA GxI)", noise=float(noise), target="mse_measured",
                   mean_true_r=_mean_true_r(clean, noisy, voxels),
                   held_out_r=float(encoding.scores[noisy.voxel_is_language].mean()), estimate=wi["estimate"],
                   ci_low=wi["ci_low"], ci_high=wi["ci_high"], precision_at_k=np.nan, precision_ci_low=np.nan,
                   precision_ci_high=np.nan, precision_prior=np.nan)
        if plant:
            p = scores.loc["precision_at_k"]
            row.update(precision_at_k=p["estimate"], precision_ci_low=p["ci_low"], precision_ci_high=p["ci_high"],
                       precision_prior=scores.loc["precision_at_k_prior", "estimate"])
        out.append(row)
    return pd.DataFrame(out)
