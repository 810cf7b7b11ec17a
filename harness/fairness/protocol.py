"""The paper's fairness protocol (section 7, Figure 6) as constants, importable cheaply."""

PAPER_QUESTION = "Does this chest X-ray contain cardiomegaly?"
PAPER_POSITIVE = "Yes"
PAPER_ATTRIBUTES = ("sex", "race", "age")
PAPER_GROUPS = {
    "sex": ("female", "male"),
    "race": ("Asian", "Black", "White"),
    "age": ("0-65", "65+"),
}
PAPER_AGE_BINS = (0.0, 65.0)  # half-open: [0, 65) is "0-65", [65, inf) is "65+"
PAPER_B = 2000
MIN_SUBJECTS = 30  # the paper had 14 Black subjects; below this we warn
