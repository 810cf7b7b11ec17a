"""Uncertainty for every reported number: bootstrap CIs, paired tests, multiplicity control."""
