"""Subgroup performance with the paper's balanced bootstrap (section 7, Figure 6).

Modules: `protocol` (the paper's settings), `demographics` (CSV reading and joining),
`items` (labelled rows from a run), `resample` (the balanced bootstrap), `analysis`
(subgroup F1 and gaps), `plot` (the Figure 6-style PNG), `chexpert_set` (the paper's item
set rebuilt from the CheXpert test labels and demographics files).
"""
