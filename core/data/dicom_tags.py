"""What the tags of one DICOM image say for its Data_Entry row: patient key, age, sex, view, size, spacing.

Each function takes a pydicom `Dataset` and returns a plain value, or "" / None when the tags do not say.
Nothing here returns an identifying value: the patient key is only ever passed to a salted hash
(`core/data/dicom.py`), and dates serve only to order follow-ups and to compute an age in years.
"""
from __future__ import annotations

import math
import re
from datetime import date

VIEWS = ("PA", "AP", "LL")
MAX_AGE = 130

# ViewPosition (0018,5101) values and words of descriptions, mapped to the NIH View Position.
_VIEW_WORDS = {
    "PA": "PA", "POSTEROANTERIOR": "PA",
    "AP": "AP", "ANTEROPOSTERIOR": "AP",
    "LL": "LL", "RL": "LL", "LAT": "LL", "LATERAL": "LL", "LLAT": "LL", "RLAT": "LL",
}
_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_DAYS_PER_YEAR = 365.25
_AGE_UNITS = {"D": 1 / _DAYS_PER_YEAR, "W": 7 / _DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}


def text(ds, keyword: str) -> str:
    """A tag's value as stripped text ("" when absent or empty); the first value of a multi-valued one."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):  # MultiValue
        value = value[0] if len(value) else ""
    return str(value).strip()


def patient_key(ds) -> str:
    """Who the image belongs to, for the salted hash: issuer + Patient ID, or the study when there is no
    Patient ID (then every study counts as its own patient). "" when neither is present."""
    patient = text(ds, "PatientID")
    if patient:
        return f"patient:{text(ds, 'IssuerOfPatientID')}\\{patient}"
    study = text(ds, "StudyInstanceUID")
    return f"study:{study}" if study else ""


def study_moment(ds) -> str:
    """Sortable `YYYYMMDDHHMMSS.ffffff` of the acquisition (study, series, acquisition or content date);
    "" when no date is given. Orders a patient's images into follow-ups; never written anywhere."""
    for day, time in (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"),
                      ("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
        if _parse_date(text(ds, day)) is not None:
            return text(ds, day) + text(ds, time).replace(":", "").ljust(6, "0")
    return ""


def age_years(ds) -> int | None:
    """Whole years from PatientAge (`058Y`, `006M`, `003W`, `010D`), else from PatientBirthDate and the
    study date; None when neither gives an age in 0..MAX_AGE."""
    match = _AGE.match(text(ds, "PatientAge").upper())
    if match:
        years = int(match.group(1)) * _AGE_UNITS[match.group(2)]
        return int(math.floor(years + 1e-9)) if years <= MAX_AGE else None
    born = _parse_date(text(ds, "PatientBirthDate"))
    taken = next((d for d in (_parse_date(text(ds, k)) for k in
                              ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")) if d), None)
    if born is None or taken is None:
        return None
    years = taken.year - born.year - ((taken.month, taken.day) < (born.month, born.day))
    return years if 0 <= years <= MAX_AGE else None


def sex(ds) -> str:
    """"M" or "F" from PatientSex; "" otherwise (NIH knows only these two)."""
    value = text(ds, "PatientSex").upper()
    return value if value in ("M", "F") else ""


def view_position(ds) -> str:
    """PA, AP or LL from ViewPosition, else from the view code's meaning, the series description or the
    protocol name: the first of these that names exactly one view. "" when none does."""
    sources = [text(ds, "ViewPosition")]
    codes = ds.get("ViewCodeSequence")
    if codes:
        sources.append(text(codes[0], "CodeMeaning").replace("-", ""))
    sources += [text(ds, "SeriesDescription"), text(ds, "ProtocolName")]
    for source in sources:
        views = {_VIEW_WORDS[word] for word in re.split(r"[^A-Z]+", source.upper()) if word in _VIEW_WORDS}
        if len(views) == 1:
            return views.pop()
    return ""


def pixel_spacing(ds) -> tuple[float, float] | None:
    """(x, y) in mm from PixelSpacing, else ImagerPixelSpacing (both are stored as row, column = y, x);
    None when absent or not two positive numbers."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            y, x = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if 0 < x < 100 and 0 < y < 100:
            return x, y
    return None


def _parse_date(value: str) -> date | None:
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None
