"""The paper's own numbers and settings, for printing beside ours (supplementary Table 1, 6.3)."""
from __future__ import annotations

import pandas as pd

from ..config import paper

# Supplementary Table 1: FID (lower is better) by aggregation method.
TABLE1_FID = {
    "add": {"Cat": 78.47, "Dog": 103.73, "Car": 55.80, "CelebA": 51.94, "Tag2pix": 47.72,
            "Yumi's Cells": 47.67, "Edges2Shoes": 117.15},
    "adain": {"Cat": 75.17, "Dog": 105.72, "Car": 52.85, "CelebA": 50.61, "Tag2pix": 52.81,
              "Yumi's Cells": 45.36, "Edges2Shoes": 88.46},
    "scft-triplet": {"Cat": 74.12, "Dog": 102.83, "Car": 52.23, "CelebA": 47.15, "Tag2pix": 45.34,
                     "Yumi's Cells": 49.29, "Edges2Shoes": 78.32},
}

# How the tables name our datasets beside the paper's.
OUR_DATASETS = {"openmoji": "OpenMoji (ours)", "faces": "DiceBear faces (ours)"}


def ours_label(dataset: str) -> str:
    """The column name of our numbers beside the paper's (Table 1) for a study dataset."""
    if dataset not in OUR_DATASETS:
        raise ValueError(f"no label for dataset {dataset!r}; known: {sorted(OUR_DATASETS)}")
    return OUR_DATASETS[dataset]


CLAIMS = {
    "fig1": "each part of the sketch takes the colour of the corresponding part of the reference: "
            "different references give differently coloured outputs (Fig. 1)",
    "table1": "SCFT gives the lowest FID on most datasets (Table 1)",
    "fig3": "SCFT puts reference colours at corresponding positions; addition smears the "
            "dominant colour and AdaIN ignores spatial variation (Fig. 3)",
    "fig17": "the triplet loss beats L1 supervision and no supervision, and L1 is worse than "
             "none (Fig. 17, a user study)",
    "fig14": "attention maps pick the corresponding region (Fig. 14)",
    "fig5": "zero-reference inputs still give plausible colouring (Fig. 5)",
    # not this paper's claim: its successor's (Li et al., ECCV 2022), tested at our scale
    "sga": "successor paper (Li et al. 2022): stop-gradient attention gives a lower FID than SCFT",
}


def table1() -> pd.DataFrame:
    return pd.DataFrame(TABLE1_FID).T.rename_axis("aggregation")


def hyperparameters() -> pd.DataFrame:
    """The paper profile's training hyperparameters with their sources (profile-independent)."""
    c = paper()
    rows = [
        ("optimiser", f"Adam betas={tuple(c.train.betas)}", "S 6.3"),
        ("lr G / D", f"{c.train.lr_g:g} / {c.train.lr_d:g}", "S 6.3"),
        ("schedule", f"constant for {c.train.decay_start:.0%}, then linear to 0", "S 6.3"),
        ("epochs / batch", f"{c.train.epochs:g} / {c.train.batch_size}", "S 6.3"),
        ("init", f"N(0, {c.model.init_std})", "S 6.3"),
        ("triplet margin gamma", f"{c.loss.margin:g}", "S 6.3"),
        ("lambda tr/adv/rec/perc/style",
         f"{c.loss.lambda_tr:g}/{c.loss.lambda_adv:g}/{c.loss.lambda_rec:g}/"
         f"{c.loss.lambda_perc:g}/{c.loss.lambda_style:g}", "C (Eq. 10)"),
        ("appearance jitter a()", f"U[-{c.data.color_jitter:g}, {c.data.color_jitter:g}] per channel",
         "S 6.3"),
        ("XDoG pre-blur sigma", f"{c.data.pre_blur_sigma:g}", "S 6.3"),
        ("TPS", f"{c.data.tps_grid}x{c.data.tps_grid} control points, U(-{c.data.tps_scale:g}, "
                f"{c.data.tps_scale:g})", "C"),
        ("no-reference ratio", "1 in 10 (9:1)", "S 6.5"),
        ("resolution", f"{c.data.resolution}", "C"),
    ]
    return pd.DataFrame(rows, columns=["setting", "value", "source"])
