"""A corpus of identifier forms and PHI-free radiology sentences for the reader-study gate.

Shared by tests/harness/test_reader_study_privacy.py (which requires every `issue` and `extra`
case to be flagged and no negative to be) and bench/bench_reader_study_phi.py (which prints
the per-form recall table quoted in docs/reader-study.md). All identifiers are synthetic:
555-01xx phone numbers, example domains, the published sample SSNs, made-up names.

Sets:
- `issue`: the forms issue 16 found reaching reader packets;
- `extra`: forms the gate already refused before issue 16 (kept refused) and close variants;
- `gap`: forms no offline pattern can find (bare names, hospital names); measured and
  reported, not required (docs/reader-study.md, "What the gate cannot see");
- `negative`: radiology text that must pass (vertebral levels, eponyms, measurements, ...);
- `heldout`, `negative_heldout`: variants written after the rules, measured once before any
  change (docs/reader-study.md), then folded in;
- `KNOWN_FALSE_ALARMS`: radiology text the gate refuses, kept as documentation.

`phi` lists the identifying parts of each positive sentence; "covered" means every letter and
digit of every part lies inside a detected span (after normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    form: str
    set: str
    text: str
    phi: tuple[str, ...] = ()


def _cases(form: str, set_: str, *pairs: tuple[str, tuple[str, ...]]) -> list[Case]:
    return [Case(form, set_, text, phi) for text, phi in pairs]


ISSUE = [
    *_cases(
        "date_month_name",
        "issue",
        ("Comparison: chest radiograph dated January 2, 2019.", ("January 2, 2019",)),
        ("No change since the CT of March 15, 2020.", ("March 15, 2020",)),
        ("Prior exam of Sept. 5th, 2018 showed a nodule.", ("Sept. 5th, 2018",)),
    ),
    *_cases(
        "date_day_month",
        "issue",
        ("Prior CT from 2 Jan 2019 showed a similar 6 mm nodule.", ("2 Jan 2019",)),
        ("Stable compared with 14 February 2021.", ("14 February 2021",)),
        ("Film of 05-Sep-2018 is unchanged.", ("05-Sep-2018",)),
    ),
    *_cases(
        "phone_paren",
        "issue",
        ("Critical result called to (617) 555-0123 at 3 pm.", ("(617) 555-0123",)),
        ("Ordering clinician reachable at (212) 555-0199.", ("(212) 555-0199",)),
    ),
    *_cases(
        "phone_other",
        "issue",
        ("Please contact the reading room at 617-555-0123.", ("617-555-0123",)),
        ("Reading room 617.555.0123.", ("617.555.0123",)),
        ("Call +1 617 555 0123 with results.", ("+1 617 555 0123",)),
    ),
    *_cases(
        "email",
        "issue",
        ("Report copied to jsmith@mgh.harvard.edu.", ("jsmith@mgh.harvard.edu",)),
        (
            "Questions: radiology.reports@example-hospital.org",
            ("radiology.reports@example-hospital.org",),
        ),
        ("Send to j.doe@pacs.local for review.", ("j.doe@pacs.local",)),
    ),
    *_cases(
        "ssn_spaced",
        "issue",
        ("Requisition lists SSN 123 45 6789.", ("123 45 6789",)),
        ("SSN 287 65 4321 recorded at registration.", ("287 65 4321",)),
    ),
    *_cases(
        "name_patient_label",
        "issue",
        ("Patient: John Smith. Indication: cough.", ("John Smith",)),
        ("Patient: Maria Garcia, portable AP chest.", ("Maria Garcia",)),
        ("PATIENT: JOHN SMITH", ("JOHN SMITH",)),
        ("Pt: Smith, John. Cough.", ("Smith, John",)),
    ),
    *_cases(
        "name_dr_no_period",
        "issue",
        ("Discussed with Dr Smith by telephone.", ("Smith",)),
        ("Findings relayed to Dr Patel at 10:15.", ("Patel",)),
    ),
    *_cases(
        "name_mr_no_period",
        "issue",
        ("Mr Smith was unable to hold his breath.", ("Smith",)),
        ("Mr Okafor declined the lateral view.", ("Okafor",)),
        ("Discussed with Mrs O'Neil at bedside.", ("O'Neil",)),
        ("Ms Lee tolerated the exam.", ("Lee",)),
    ),
    *_cases(
        "street_address",
        "issue",
        ("Patient lives at 123 Main Street, Boston, MA 02115.", ("123 Main Street", "02115")),
        ("Send films to 45 Elm Avenue, Springfield, IL 62704.", ("45 Elm Avenue", "62704")),
        ("Mail to 77 Beacon St, Boston MA 02108-1234.", ("77 Beacon St", "02108-1234")),
    ),
    *_cases(
        "age_over_89",
        "issue",
        ("92-year-old woman with cough and fever.", ("92",)),
        ("A 97 year old man status post fall.", ("97",)),
        ("Patient age 95, portable AP view.", ("95",)),
        ("93 y/o female with chest pain.", ("93",)),
        ("Woman aged 96 presenting with dyspnea.", ("96",)),
        ("Ninety-two-year-old man with fever.", ("Ninety-two",)),
        ("101-year-old with hypoxia.", ("101",)),
    ),
    *_cases(
        "mrn_fullwidth",
        "issue",
        (
            "\uff2d\uff32\uff2e \uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18 chest radiograph.",
            ("12345678",),
        ),
        (
            "Patient \uff2d\uff32\uff2e\uff1a\uff17\uff16\uff15\uff14\uff13\uff12\uff11.",
            ("7654321",),
        ),
    ),
    *_cases(
        "mrn_zero_width",
        "issue",
        ("MRN: 765\u200b4321 lateral view.", ("7654321",)),
        ("MRN 1234\u200b5678 frontal view.", ("12345678",)),
        ("M\u200dRN 2345\u20606789 on the requisition.", ("23456789",)),
        ("MRN 3456\u00ad7890 portable.", ("34567890",)),
    ),
]

EXTRA = [
    *_cases(
        "mrn",
        "extra",
        ("MRN 12345678. Frontal and lateral views.", ("12345678",)),
        ("MRN#12345678 on the requisition.", ("12345678",)),
        ("Med Rec #: 00123456.", ("00123456",)),
        ("mrn 23456789 verified.", ("23456789",)),
    ),
    *_cases(
        "accession",
        "extra",
        ("Accession 98765432. CT chest with contrast.", ("98765432",)),
        ("Acc no: 7788990, CT abdomen.", ("7788990",)),
    ),
    *_cases(
        "date_numeric",
        "extra",
        ("Compared with radiograph of 01/02/2019, the effusion has decreased.", ("01/02/2019",)),
        ("Study date 2019-01-02. No acute findings.", ("2019-01-02",)),
        ("Follow-up of 3/4/21 exam.", ("3/4/21",)),
    ),
    *_cases(
        "date_of_birth",
        "extra",
        ("DOB: 03/14/1931. Chest radiograph.", ("03/14/1931",)),
        ("Born on March 14, 1931.", ("March 14, 1931",)),
    ),
    *_cases(
        "ssn_dashed",
        "extra",
        ("Patient SSN: 123-45-6789.", ("123-45-6789",)),
        ("Insurance form shows 287-65-4321.", ("287-65-4321",)),
    ),
    *_cases(
        "name_titled_period",
        "extra",
        ("Findings reviewed with Dr. Smith.", ("Smith",)),
        ("Discussed with Mrs. O'Neil.", ("O'Neil",)),
        ("Name: Wei Zhang", ("Wei Zhang",)),
    ),
    *_cases(
        "dicom_person_name",
        "extra",
        ("Header patient name SMITH^JOHN does not match.", ("SMITH^JOHN",)),
    ),
    *_cases(
        "dicom_uid",
        "extra",
        (
            "Study UID 1.2.840.113619.2.55.3.604688119.868.1234567890.123 loaded.",
            ("1.2.840.113619.2.55.3.604688119.868.1234567890.123",),
        ),
    ),
    *_cases(
        "dataset_id",
        "extra",
        ("See patient p10000032 study s50414267.", ("p10000032", "s50414267")),
        (
            "Image 02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.",
            ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",),
        ),
        ("From patient64741 study1.", ("patient64741",)),
    ),
    *_cases(
        "url",
        "extra",
        (
            "Images available at https://pacs.mgh.org/viewer?study=4471.",
            ("https://pacs.mgh.org/viewer?study=4471",),
        ),
        (
            "See www.example-hospital.org/radiology/case/5521 for the prior.",
            ("www.example-hospital.org/radiology/case/5521",),
        ),
    ),
]

GAP = [
    *_cases(
        "bare_name",
        "gap",
        ("Compared with the study of John Smith.", ("John Smith",)),
        ("Wei Zhang has a right lower lobe opacity.", ("Wei Zhang",)),
    ),
    *_cases(
        "hospital",
        "gap",
        (
            "Outside films from Massachusetts General Hospital were reviewed.",
            ("Massachusetts General",),
        ),
    ),
]

NEGATIVE = [
    Case("negative", "negative", text)
    for text in (
        "No focal consolidation.",
        "Heart size normal.",
        "Left pleural effusion, small.",
        "Endotracheal tube terminates 4 cm above the carina.",
        "Right internal jugular central venous catheter tip in the SVC.",
        "PICC line tip in the cavoatrial junction; NG tube below the diaphragm.",
        "Nodule measures 8 x 6 mm in the right upper lobe (series 3, image 45).",
        "Mass measures 4.5 x 3.2 x 2.1 cm.",
        "The effusion measures 10.5-12.5 cm in height.",
        "Lesion size 2.5-3.0 cm, previously 1.5-2.0 cm.",
        "Degenerative changes of the thoracic spine at T8-T10.",
        "Compression deformity of T12 and L1-L2 disc space narrowing.",
        "Cervical ribs at C7; L4-L5 degenerative disease.",
        "Recommend follow-up CT in 3 months per Fleischner Society guidelines.",
        "Kerley B lines suggest interstitial edema.",
        "Wedge-shaped opacity may represent a Hampton hump.",
        "Swan-Ganz catheter tip in the right main pulmonary artery.",
        "Median sternotomy wires and CABG clips are intact.",
        "Mild cardiomegaly with pulmonary vascular congestion.",
        "PA and lateral views of the chest were obtained.",
        "Portable AP radiograph in the ICU.",
        "DR portable chest, single view.",
        "Recommend MR imaging of the thoracic spine.",
        "Compared with the prior study, there is no interval change.",
        "67-year-old man with dyspnea.",
        "89-year-old woman with cough.",
        "___-year-old woman with hypoxia. Assess for effusion.",
        "Findings discussed with Dr. ___ at 10:15 on ___ by ___.",
        "BI-RADS 2: benign findings.",
        "Left lower lobe atelectasis, grade 2 of 4.",
        "Healed fracture of the left 6th rib.",
        "Heart rate 92 bpm, oxygen saturation 95% on 2 L.",
        "Opacity occupies 1/3 of the right hemithorax.",
        "Unchanged since 2019.",
        "Age-indeterminate compression deformity of a mid thoracic vertebral body.",
        "Reader 3 agreed with the model on 45 of 50 cases.",
        "Model output: cardiomegaly (probability 0.82), edema (0.41).",
        "The lungs are clear. No pleural effusion or pneumothorax.",
        "Impression: No acute cardiopulmonary process.",
    )
]

# Written after the rules above were fixed and first measured without changes (found 22/27,
# one negative below flagged: docs/reader-study.md); the five misses were then covered by new
# rules, so these are now in-sample like the rest.
HELDOUT = [
    *_cases(
        "heldout",
        "heldout",
        ("Exam date: Jan. 3rd 2020.", ("Jan. 3rd 2020",)),
        ("Prior film seen on 3rd January 2020.", ("3rd January 2020",)),
        ("Unchanged from the 14th of March, 2021.", ("14th of March, 2021",)),
        ("December 2018 CT showed the nodule.", ("December 2018",)),
        ("Tel 617 555 0123 for the reading room.", ("617 555 0123",)),
        ("Call 1-800-555-0199 to schedule.", ("1-800-555-0199",)),
        ("Results called to (617)555-0123.", ("(617)555-0123",)),
        ("Email: JANE.DOE@EXAMPLE.COM", ("JANE.DOE@EXAMPLE.COM",)),
        ("SSN: 123456789 on file.", ("123456789",)),
        ("Pt. name: Jane Doe", ("Jane Doe",)),
        ("Patient - John Smith, portable.", ("John Smith",)),
        ("Reviewed with Dr Jane O'Connor-Smith.", ("Jane O'Connor-Smith",)),
        ("Miss Patel was seen in the ED.", ("Patel",)),
        ("Mrs Garcia-Lopez is short of breath.", ("Garcia-Lopez",)),
        (
            "Home: 1600 Pennsylvania Ave NW, Washington, DC 20500.",
            ("1600 Pennsylvania Ave", "20500"),
        ),
        ("Patient lives on Elm Street.", ("Elm Street",)),
        ("94 year-old female with cough.", ("94",)),
        ("Age: 99. Portable view.", ("99",)),
        ("A woman in her nineties with dyspnea.", ("nineties",)),
        ("103yo man with fever.", ("103",)),
        ("MRN\uff1a\uff11\uff12\uff13\uff14\uff15\uff16\uff17 portable.", ("1234567",)),
        ("MRN 12 34 56 78 frontal.", ("12 34 56 78",)),
        ("Medical Record #: A1234567.", ("A1234567",)),
        ("Acc#: 12345678, chest PA.", ("12345678",)),
        ("MRN 1234\u200c5678 portable.", ("12345678",)),
        ("Seen by Dr.\u00a0Smith today.", ("Smith",)),
        ("DOB 1/2/1930.", ("1/2/1930",)),
    ),
]

NEGATIVE_HELDOUT = [
    Case("negative_heldout", "negative_heldout", text)
    for text in (
        "Tip of the Dobbhoff tube in the stomach.",
        "Status post CABG x3.",
        "The right 5th-7th ribs show healed fractures.",
        "Compared with radiograph from earlier today at 09:32.",
        "Lung volumes are low; ETT 5.2 cm above the carina.",
        "No change in 2 months.",
        "Patient: intubated and sedated.",
        "MR Brain without contrast is recommended.",
        "Westermark sign and Hampton hump are absent.",
        "Chilaiditi sign.",
        "Kerley A and B lines.",
        "10 mm nodule at 11 o'clock.",
        "T2-T4 spinous processes are intact.",
        "IV contrast 100 mL Omnipaque 350.",
        "Series 2 image 101.",
        "Score 92 of 100 on the quality scale.",
        "Oxygen saturation 91% on room air.",
    )
]

# Radiology text the gate refuses (two capitalised words after "Patient:" read as a name):
# the cost of a broad pattern, documented rather than tuned away.
KNOWN_FALSE_ALARMS = [Case("known_false_alarm", "negative_heldout", "Patient: Portable AP Chest")]

CORPUS: list[Case] = [
    *ISSUE,
    *EXTRA,
    *GAP,
    *HELDOUT,
    *NEGATIVE,
    *NEGATIVE_HELDOUT,
    *KNOWN_FALSE_ALARMS,
]
