"""The four CheXagent training stages (paper section 4.2, Table 8)."""
