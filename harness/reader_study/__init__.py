"""The radiologist reader study of the CheXagent paper (section 6, Figure 4), for any model.

`export` builds blinded packets (per-reader CSV + HTML, REDCap dictionary and template) and a
separate key; `analyze` joins the filled packets back through the key and reports Figure 4's
scores with two-way bootstrap CIs, Krippendorff's alpha and metric correlations.
See docs/reader-study.md.
"""
