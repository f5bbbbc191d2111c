"""Importing DICOM studies: pixels, Data_Entry rows, labels, bad input, re-runs and privacy.

Every DICOM file here is built with pydicom itself, small enough that no resize blurs the checked pixels.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, HTJ2KLossless,
                         JPEG2000Lossless, JPEGBaseline8Bit, MediaStorageDirectoryStorage, generate_uid)

from core.data import dicom
from core.data.dataset import open_dataset
from core.data.dicom import ImportDicomConfig, OutNotEmpty, import_dicom
from core.errors import UserError
from core.jobs import Cancelled, Job

NAME, BIRTH, ACCESSION = "DOE^JANE", "19600315", "ACC-7731"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"


def _dataset(sop_class=DigitalXRayImageStorageForPresentation, syntax=ExplicitVRLittleEndian, uid=None,
             patient="PAT-SECRET-1", **tags) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid or generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient
    ds.PatientName = NAME
    ds.PatientBirthDate = BIRTH
    ds.AccessionNumber = ACCESSION
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate = "20200101"
    ds.Modality = "DX"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def write_image(path: Path, pixels: np.ndarray, photometric="MONOCHROME2", bits=12, **tags) -> Dataset:
    """A single-frame DX image; `tags` are set by keyword before the pixels."""
    ds = _dataset(**tags)
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_encapsulated(path: Path, frame: bytes, syntax, rows: int, columns: int) -> None:
    ds = _dataset(syntax=syntax, Rows=rows, Columns=columns, SamplesPerPixel=1,
                  PhotometricInterpretation="MONOCHROME2", BitsAllocated=8, BitsStored=8, HighBit=7,
                  PixelRepresentation=0)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def ramp(height=64, width=64, top=4095) -> np.ndarray:
    """uint16 values 0..top spread over the image in reading order."""
    return np.linspace(0, top, height * width).round().astype(np.uint16).reshape(height, width)


def run(source, out, **options) -> dicom.ImportResult:
    options.setdefault("size", 64)
    return import_dicom(ImportDicomConfig(str(source), str(out), **options))


def png(out: Path, name: str) -> np.ndarray:
    found = list(out.glob(f"images_*/images/{name}"))
    assert len(found) == 1, f"{name} not found once in {out}"
    return cv2.imread(str(found[0]), cv2.IMREAD_UNCHANGED)


def only_image(out: Path) -> np.ndarray:
    return png(out, "00000001_000.png")


# --------------------------------------------------------------------------------------------- pixels

def test_a_12_bit_window_spans_the_8_bit_range_instead_of_clipping(tmp_path):
    values = np.full((64, 64), 1000, np.uint16)
    values[:, :16], values[:, 16:32], values[:, 48:] = 500, 750, 4000
    write_image(tmp_path / "src" / "a.dcm", values, WindowCenter=1000, WindowWidth=1001)
    run(tmp_path / "src", tmp_path / "out")
    image = only_image(tmp_path / "out")
    assert image.dtype == np.uint8 and image.shape == (64, 64)
    assert image[0, 0] == 0                          # at or below the window's lower end
    assert abs(int(image[0, 20]) - 64) <= 1          # a quarter into the window
    assert abs(int(image[0, 40]) - 128) <= 1         # the centre: mid grey, not 255 as clipping would give
    assert image[0, 60] == 255                       # above the window


def test_monochrome1_is_inverted(tmp_path):
    pixels = ramp()
    write_image(tmp_path / "one" / "a.dcm", pixels, photometric="MONOCHROME1")
    write_image(tmp_path / "two" / "a.dcm", pixels, photometric="MONOCHROME2")
    run(tmp_path / "one", tmp_path / "out1")
    run(tmp_path / "two", tmp_path / "out2")
    one, two = only_image(tmp_path / "out1"), only_image(tmp_path / "out2")
    assert two[0, 0] == 0 and two[-1, -1] == 255
    assert np.array_equal(one.astype(int), 255 - two.astype(int))


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path):
    # stored 0..4095 -> Hounsfield-like -1024..3071; the window is given in rescaled units
    values = np.full((64, 64), 1024, np.uint16)      # rescaled: 0
    values[:, 32:] = 1524                            # rescaled: 500
    write_image(tmp_path / "src" / "a.dcm", values, RescaleSlope=1, RescaleIntercept=-1024,
                WindowCenter=250, WindowWidth=501)
    run(tmp_path / "src", tmp_path / "out")
    image = only_image(tmp_path / "out")
    assert image[0, 0] == 0 and image[0, 63] == 255


def test_a_voi_lut_sequence_is_applied(tmp_path):
    ds = _dataset()
    ds.set_pixel_data(ramp(), "MONOCHROME2", 12, generate_instance_uid=False)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 16])
    item.add_new("LUTData", "US", [min(v, 1000) for v in range(4096)])   # everything from 1000 up is white
    ds.VOILUTSequence = [item]
    (tmp_path / "src").mkdir()
    ds.save_as(tmp_path / "src" / "a.dcm", enforce_file_format=True)
    result = run(tmp_path / "src", tmp_path / "out")
    image = only_image(tmp_path / "out")
    stored = ramp()
    assert result.unwindowed == 0
    assert (image[stored >= 1000] == 255).all()
    below = stored < 1000
    assert np.abs(image[below].astype(float) - stored[below] / 1000 * 255).max() <= 1


def test_without_a_window_the_image_range_spans_0_to_255(tmp_path):
    write_image(tmp_path / "src" / "a.dcm", ramp(top=300) + 100, bits=16)
    result = run(tmp_path / "src", tmp_path / "out")
    image = only_image(tmp_path / "out")
    assert result.unwindowed == 1
    assert image.min() == 0 and image.max() == 255


def test_a_wide_image_is_fitted_and_padded_with_black_and_counted(tmp_path):
    write_image(tmp_path / "src" / "a.dcm", np.full((40, 80), 4000, np.uint16) + ramp(40, 80, 10),
                WindowCenter=2000, WindowWidth=100)
    result = run(tmp_path / "src", tmp_path / "out")
    image = only_image(tmp_path / "out")
    assert result.padded == 1
    assert image.shape == (64, 64)
    assert (image[:12] == 0).all() and (image[-12:] == 0).all()      # 64x32 centred: 16 rows black each side
    assert (image[20:44] == 255).all()


def test_a_jpeg_compressed_image_is_decoded(tmp_path):
    if not get_decoder(JPEGBaseline8Bit).is_available:
        pytest.skip("no JPEG decoder plugin installed")
    original = (ramp(top=255)).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", original, [cv2.IMWRITE_JPEG_QUALITY, 98])
    write_encapsulated(tmp_path / "src" / "a.dcm", jpeg.tobytes(), JPEGBaseline8Bit, 64, 64)
    result = run(tmp_path / "src", tmp_path / "out")
    assert result.added == 1 and not result.skipped
    assert np.abs(only_image(tmp_path / "out").astype(int) - original).max() <= 4


def test_a_file_without_preamble_is_read(tmp_path):
    ds = _dataset()
    ds.set_pixel_data(ramp(), "MONOCHROME2", 12, generate_instance_uid=False)
    del ds.file_meta
    (tmp_path / "src").mkdir()
    pydicom.dcmwrite(tmp_path / "src" / "old", ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert (tmp_path / "src" / "old").read_bytes()[128:132] != b"DICM"
    result = run(tmp_path / "src", tmp_path / "out")
    assert result.added == 1
    assert only_image(tmp_path / "out")[-1, -1] == 255


# ----------------------------------------------------------------------------------------------- rows

def test_rows_come_from_the_tags(tmp_path):
    src = tmp_path / "src"
    # patient A: files named against the date order, so follow-ups must come from the study dates
    write_image(src / "a" / "1.dcm", ramp(48, 64), patient="A-1", StudyDate="20210601", PatientAge="061Y",
                PatientSex="F", ViewPosition="PA", PixelSpacing=[0.2, 0.15])
    write_image(src / "a" / "2.dcm", ramp(), patient="A-1", StudyDate="20190301", PatientSex="F",
                SeriesDescription="Chest AP portable", ImagerPixelSpacing=[0.139, 0.139])
    write_image(src / "b" / "1.dcm", ramp(), patient="B-2", PatientSex="M", SeriesDescription="THORAX LAT",
                PatientBirthDate="19800701", StudyDate="20200630")
    result = run(src, tmp_path / "out")
    assert result.added == 3 and result.new_patients == 2
    table = open_dataset(tmp_path / "out").table.set_index("image")
    patients = sorted(table["patient_id"].unique())
    assert patients == [1, 2]
    a_id = table.loc[table["sex"] == "F", "patient_id"].iloc[0]
    earlier, later = table.loc[f"{a_id:08d}_000.png"], table.loc[f"{a_id:08d}_001.png"]
    assert (earlier["view"], earlier["follow_up"], earlier["orig_width"]) == ("AP", 0, 64)
    assert earlier["age"] == 58                                    # from the birth date: 2019-03-01 - 1960-03-15
    assert (earlier["spacing_x"], earlier["spacing_y"]) == (0.139, 0.139)
    assert (later["view"], later["follow_up"], later["age"]) == ("PA", 1, 61)
    assert (later["orig_width"], later["orig_height"]) == (64, 48)
    assert (later["spacing_x"], later["spacing_y"]) == (0.15, 0.2)  # PixelSpacing is (row, column) = (y, x)
    b = table.loc[table["sex"] == "M"].iloc[0]
    assert (b["view"], b["age"], b["follow_up"]) == ("LL", 39, 0)   # a day before the 40th birthday


def test_the_same_patient_id_from_another_issuer_is_another_patient(tmp_path):
    write_image(tmp_path / "src" / "1.dcm", ramp(), patient="7", IssuerOfPatientID="HOSP-A")
    write_image(tmp_path / "src" / "2.dcm", ramp(), patient="7", IssuerOfPatientID="HOSP-B")
    assert run(tmp_path / "src", tmp_path / "out").new_patients == 2


def test_labels_come_only_from_the_csv(tmp_path):
    src = tmp_path / "src"
    by_uid = write_image(src / "x" / "1.dcm", ramp())
    write_image(src / "x" / "2.dcm", ramp(), patient="P2")
    write_image(src / "x" / "3.dcm", ramp(), patient="P3")
    (tmp_path / "labels.csv").write_text(
        "key,Finding Labels\n"
        f"{by_uid.SOPInstanceUID},Nodule|Effusion\n"
        "x/2.dcm,No Finding\n", encoding="utf-8")
    result = run(src, tmp_path / "out", labels=str(tmp_path / "labels.csv"))
    assert result.unlabelled == ["x/3.dcm"] and result.unlabelled_total == 1
    index = open_dataset(tmp_path / "out")
    assert sorted(index.table["finding_labels"]) == ["", "Effusion|Nodule", "No Finding"]
    assert index.label_counts()["No Finding"] == 1


@pytest.mark.parametrize("line, problem", [
    ("x/1.dcm,Nodule|Tumour", "unknown label 'Tumour'"),
    ("x/1.dcm,No Finding|Mass", "'No Finding' beside a finding"),
    ("../elsewhere.dcm,Mass", "../elsewhere.dcm is not inside the DICOM folder"),
])
def test_a_bad_labels_csv_is_refused_before_anything_is_written(tmp_path, line, problem):
    write_image(tmp_path / "src" / "x" / "1.dcm", ramp())
    (tmp_path / "labels.csv").write_text(f"x/2.dcm,Mass\n{line}\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"labels.csv: line 2: {problem}"):
        run(tmp_path / "src", tmp_path / "out", labels=str(tmp_path / "labels.csv"))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_every_kind_of_bad_input_is_counted_and_listed_never_fatal(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.dcm", ramp())
    (src / "notes.txt").write_text("not a DICOM file")
    (src / "empty.dcm").write_bytes(b"")
    report = _dataset(sop_class=BASIC_TEXT_SR)
    report.save_as(src / "report.dcm", enforce_file_format=True)
    _dataset(sop_class=PRESENTATION_STATE).save_as(src / "state.dcm", enforce_file_format=True)
    _dataset().save_as(src / "no_pixels.dcm", enforce_file_format=True)
    frames = _dataset()
    frames.set_pixel_data(np.stack([ramp(), ramp()]), "MONOCHROME2", 12, generate_instance_uid=False)
    frames.save_as(src / "cine.dcm", enforce_file_format=True)
    colour = _dataset()
    colour.set_pixel_data(np.zeros((8, 8, 3), np.uint8), "RGB", 8, generate_instance_uid=False)
    colour.save_as(src / "screenshot.dcm", enforce_file_format=True)
    directory = _dataset(sop_class=MediaStorageDirectoryStorage)
    directory.DirectoryRecordSequence = []
    directory.save_as(src / "DICOMDIR", enforce_file_format=True)
    whole = (src / "good.dcm").read_bytes()
    (src / "truncated.dcm").write_bytes(whole[:-3000])
    (src / "garbage.dcm").write_bytes(whole[:132] + b"\xff" * 200)
    (src / "zcopy.dcm").write_bytes(whole)              # the same SOPInstanceUID again
    unsupported = next((s for s in (HTJ2KLossless, JPEG2000Lossless) if not get_decoder(s).is_available), None)
    if unsupported is not None:
        write_encapsulated(src / "j2k.dcm", b"\xff\x4f\xff\x51" + bytes(60), unsupported, 8, 8)
    outside = tmp_path / "elsewhere.dcm"
    write_image(outside, ramp())
    (src / "link.dcm").symlink_to(outside)
    (src / "inner.dcm").symlink_to(src / "good.dcm")    # a link inside: good.dcm is imported in its own place

    result = run(src, tmp_path / "out")
    kinds = {file: kind for file, kind, _ in result.skipped}
    assert result.added == 1
    assert kinds == {
        "notes.txt": dicom.NOT_DICOM, "empty.dcm": dicom.NOT_DICOM,
        "report.dcm": dicom.NOT_IMAGE, "state.dcm": dicom.NOT_IMAGE, "no_pixels.dcm": dicom.NO_PIXELS,
        "cine.dcm": dicom.MULTI_FRAME, "screenshot.dcm": dicom.COLOUR, "DICOMDIR": dicom.DICOMDIR,
        "truncated.dcm": dicom.CORRUPT, "garbage.dcm": dicom.CORRUPT, "link.dcm": dicom.LINK_OUTSIDE,
        "zcopy.dcm": dicom.DUPLICATE, **({"j2k.dcm": dicom.COMPRESSION} if unsupported else {}),
    }
    details = {file: detail for file, _, detail in result.skipped}
    assert "Basic Text SR" in details["report.dcm"]
    assert "2 frames" in details["cine.dcm"]
    if unsupported:
        assert "no decoder" in details["j2k.dcm"]
    assert sum(result.skipped_counts().values()) == len(result.skipped)
    assert len(open_dataset(tmp_path / "out").table) == 1


def test_a_source_without_images_is_refused_and_nothing_is_written(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="no DICOM image could be imported.*not DICOM: 1"):
        run(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_with_other_files_needs_force(tmp_path):
    write_image(tmp_path / "src" / "a.dcm", ramp())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(OutNotEmpty, match="--force"):
        run(tmp_path / "src", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.txt"]
    assert run(tmp_path / "src", tmp_path / "out", force=True).added == 1
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_a_dataset_folder_inside_the_dicom_folder_is_not_read_back(tmp_path):
    write_image(tmp_path / "src" / "a.dcm", ramp())
    run(tmp_path / "src", tmp_path / "src" / "nih")
    again = run(tmp_path / "src", tmp_path / "src" / "nih")
    assert (again.added, again.already, again.skipped) == (0, 1, [])


# ---------------------------------------------------------------------------------- re-runs, privacy

def test_a_second_run_adds_only_new_files_and_keeps_earlier_names(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    write_image(src / "1.dcm", ramp(), StudyDate="20200101")
    write_image(src / "2.dcm", ramp(), patient="OTHER")
    first = run(src, out)
    before = {p.name: p.read_bytes() for p in out.glob("images_*/images/*.png")}
    write_image(src / "3.dcm", ramp(top=1000), StudyDate="20190101")   # same patient, an older study
    opened = []
    read = dicom._read_dataset
    monkeypatch.setattr(dicom, "_read_dataset", lambda path: opened.append(Path(path).name) or read(path))
    second = run(src, out)
    assert (first.added, second.added, second.already) == (2, 1, 2)
    assert opened == ["3.dcm"]                      # unchanged files are not even opened
    assert second.new_patients == 0 and second.total == 3
    after = {p.name: p.read_bytes() for p in out.glob("images_*/images/*.png")}
    assert {name: after[name] for name in before} == before
    table = open_dataset(out).table
    assert len(table) == 3 and table["patient_id"].nunique() == 2
    assert table["follow_up"].max() == 1            # numbered after the patient's earlier image


def test_a_later_labels_csv_labels_earlier_images(tmp_path):
    write_image(tmp_path / "src" / "1.dcm", ramp())
    run(tmp_path / "src", tmp_path / "out")
    (tmp_path / "labels.csv").write_text("1.dcm,Mass\nmissing.dcm,Nodule\n", encoding="utf-8")
    result = run(tmp_path / "src", tmp_path / "out", labels=str(tmp_path / "labels.csv"))
    assert (result.added, result.relabelled, result.unmatched_labels, result.unlabelled_total) == (0, 1, 1, 0)
    assert list(open_dataset(tmp_path / "out").table["finding_labels"]) == ["Mass"]


def test_nothing_identifying_is_written(tmp_path):
    src = tmp_path / "src" / "DOE_JANE"               # PACS exports often name folders after the patient
    uid = write_image(src / "1.dcm", ramp(), PatientAge="060Y").SOPInstanceUID
    write_image(src / "2.dcm", ramp(), OtherPatientIDs="OTHER-9")
    (tmp_path / "labels.csv").write_text(f"{uid},Mass\n", encoding="utf-8")
    run(tmp_path / "src", tmp_path / "out", labels=str(tmp_path / "labels.csv"))
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {p.suffix for p in written} == {".csv", ".png", ".json"}
    forbidden = [NAME, "DOE", "JANE", BIRTH, "1960", ACCESSION, "PAT-SECRET-1", "SECRET", uid, "20200101"]
    for path in written:
        data = path.read_bytes()
        for secret in forbidden:
            assert secret.encode() not in data, f"{secret} found in {path.relative_to(tmp_path)}"
    private = tmp_path / "out" / dicom.PRIVATE_FOLDER
    assert (private.stat().st_mode & 0o077) == 0 and ((private / "mapping.json").stat().st_mode & 0o077) == 0


def test_a_stop_keeps_the_images_converted_so_far_and_a_rerun_finishes(tmp_path):
    for number in range(8):
        write_image(tmp_path / "src" / f"{number}.dcm", ramp(), patient=f"P{number}")

    def stop_after_two(progress):
        if progress.stage == "converting" and progress.done >= 2:
            job.request_stop()

    job = Job(on_progress=stop_after_two, min_interval=0)
    with pytest.raises(Cancelled) as stopped:
        import_dicom(ImportDicomConfig(str(tmp_path / "src"), str(tmp_path / "out"), size=64, workers=1), job)
    partial = stopped.value.result
    assert 2 <= partial.added < 8
    assert len(open_dataset(tmp_path / "out").table) == partial.added
    assert not (tmp_path / "out" / dicom.PRIVATE_FOLDER / "staging").exists()
    rest = run(tmp_path / "src", tmp_path / "out")
    assert (rest.added, rest.already, rest.total) == (8 - partial.added, partial.added, 8)


def test_progress_reaches_every_file_with_a_stage(tmp_path):
    for number in range(3):
        write_image(tmp_path / "src" / f"{number}.dcm", ramp())
    reports = []
    job = Job(on_progress=reports.append, min_interval=0)
    import_dicom(ImportDicomConfig(str(tmp_path / "src"), str(tmp_path / "out"), size=64), job)
    converting = [r for r in reports if r.stage == "converting"]
    assert converting[-1].done == converting[-1].total == 3
    assert converting[-1].eta_seconds == 0.0
    assert [r.stage for r in reports].index("listing") < [r.stage for r in reports].index("converting")


def test_decoding_uses_several_threads(tmp_path, monkeypatch):
    for number in range(6):
        write_image(tmp_path / "src" / f"{number}.dcm", ramp(), patient=f"P{number}")
    threads = set()
    fit = dicom.fit_square
    monkeypatch.setattr(dicom, "fit_square", lambda *a: threads.add(threading.get_ident()) or fit(*a))
    barrier = threading.Barrier(2, timeout=10)
    read = dicom._read_dataset

    def read_together(path):   # two files must be read at once, or the barrier times out
        if Path(path).name in ("0.dcm", "1.dcm"):
            barrier.wait()
        return read(path)

    monkeypatch.setattr(dicom, "_read_dataset", read_together)
    assert run(tmp_path / "src", tmp_path / "out", workers=2).added == 6
    assert len(threads) == 2


def test_spreadsheet_formulas_are_neutralised():
    row = {"image": "00000001_000.png", "labels": "=HYPERLINK(1)", "age": 58, "sex": "@M", "view": "PA, AP",
           "width": 10, "height": 10, "spacing": (-1.0, 0.1)}
    assert dicom.data_entry_text([row]).splitlines()[1] == \
        "00000001_000.png,'=HYPERLINK(1),0,00000001,058Y,'@M,\"PA, AP\",10,10,-1,0.1,"


# ------------------------------------------------------------------------------------------------ CLI

def test_the_cli_imports_and_prints_a_summary(tmp_path, capsys):
    from cli.main import main

    write_image(tmp_path / "src" / "a.dcm", ramp(48, 64))
    (tmp_path / "src" / "x.txt").write_text("x")
    code = main(["import-dicom", str(tmp_path / "src"), str(tmp_path / "out"), "--size", "64"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Added 1 image(s)" in printed and "1 image(s) have no Finding Labels" in printed
    assert "not DICOM 1" in printed and "x.txt (not a DICOM file)" in printed and "padded" in printed
    assert len(open_dataset(tmp_path / "out").table) == 1


def test_the_cli_refuses_a_non_empty_folder_in_one_line(tmp_path, capsys):
    from cli.main import main

    write_image(tmp_path / "src" / "a.dcm", ramp())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "other.txt").write_text("x")
    assert main(["import-dicom", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--force" in error


# ------------------------------------------------------------------------------------------------ app

def _settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


def test_the_dialog_builds_the_config_and_remembers_it(qtbot, tmp_path):
    from PySide6.QtWidgets import QDialogButtonBox

    from app.import_dicom import ImportDicomDialog

    settings = _settings(tmp_path)
    dialog = ImportDicomDialog(settings)
    qtbot.addWidget(dialog)
    import_button = dialog.buttons.button(QDialogButtonBox.Ok)
    assert not import_button.isEnabled()
    dialog.source.setText(str(tmp_path / "src"))
    dialog.out.setText(str(tmp_path / "out"))
    dialog.size.setValue(256)
    assert import_button.isEnabled()
    assert dialog.config() == ImportDicomConfig(str(tmp_path / "src"), str(tmp_path / "out"), "", 256)
    dialog.accept()
    again = ImportDicomDialog(settings)
    qtbot.addWidget(again)
    assert again.config() == dialog.config()


def test_the_app_imports_in_a_worker_and_opens_the_dataset(qtbot, tmp_path):
    from PySide6.QtWidgets import QMessageBox, QWidget

    from app.import_dicom import run_import

    write_image(tmp_path / "src" / "a.dcm", ramp())
    (tmp_path / "src" / "x.txt").write_text("x")
    parent = QWidget()
    qtbot.addWidget(parent)
    opened = []
    run_import(parent, ImportDicomConfig(str(tmp_path / "src"), str(tmp_path / "out"), size=64), opened.append)
    qtbot.waitUntil(lambda: bool(opened), timeout=120000)
    assert opened == [str((tmp_path / "out").resolve())]
    box = parent.findChild(QMessageBox)
    assert "Added 1 image(s)" in box.text()
    assert "x.txt: not DICOM — not a DICOM file" in box.detailedText()


def test_the_app_asks_before_writing_into_a_folder_with_other_files(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox, QWidget

    from app.import_dicom import run_import

    asked = []
    monkeypatch.setattr("app.import_dicom.QMessageBox.question", lambda *args: asked.append(args[2]) or QMessageBox.No)
    write_image(tmp_path / "src" / "a.dcm", ramp())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    parent = QWidget()
    qtbot.addWidget(parent)
    assert run_import(parent, ImportDicomConfig(str(tmp_path / "src"), str(tmp_path / "out")), print) is None
    assert "holds other files" in asked[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


def test_the_file_menu_offers_the_import(qtbot, tmp_path):
    from app.main_window import MainWindow

    window = MainWindow(_settings(tmp_path))
    qtbot.addWidget(window)
    file_menu = window.menuBar().actions()[0].menu()
    assert "&Import DICOM folder…" in [action.text() for action in file_menu.actions()]
