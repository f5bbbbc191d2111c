"""How fast does `import-dicom` turn DICOM files into NIH PNGs, on one thread and on all cores?

Data: --files generated DICOM images (default 300) of --source-size px (default 1024), 12-bit with a
window; every third is MONOCHROME1 and, when a JPEG decoder plugin is installed, every sixth is
JPEG-baseline compressed. They are written once into --data if that folder does not exist yet.
Each repeat imports the whole folder into a fresh dataset folder with workers=1 and with workers=cores
(alternated, so both see the same load), at --size px; the best time of each is kept. The cores are
shared: the load average before and after is printed, and only the ratio measured in this run means much.
Run: `.venv/bin/python bench/dicom_import.py [--files 300] [--source-size 1024] [--size 1024] [--repeat 3]`
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.dicom import ImportDicomConfig, import_dicom  # noqa: E402


def write_files(folder: Path, count: int, side: int) -> None:
    """`count` single-frame DX images, one patient per ten images, in one subfolder per patient."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import (DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, JPEGBaseline8Bit,
                             generate_uid)

    jpeg = get_decoder(JPEGBaseline8Bit).is_available
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    body = (np.exp(-((x - 0.5) ** 2 / 0.08 + (y - 0.5) ** 2 / 0.15)) * 3000 + 500)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for number in range(count):
        pixels = np.clip(body + rng.normal(0, 60, body.shape), 0, 4095).astype(np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID = DigitalXRayImageStorageForPresentation
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.StudyDate, ds.ViewPosition = f"BENCH-{number // 10}", f"2020{1 + number % 10:02d}01", "PA"
        ds.PixelSpacing = [0.143, 0.143]
        if jpeg and number % 6 == 5:
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ok, data = cv2.imencode(".jpg", (pixels >> 4).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
            ds.Rows = ds.Columns = side
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = encapsulate([data.tobytes()])
            ds["PixelData"].VR = "OB"
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            photometric = "MONOCHROME1" if number % 3 == 2 else "MONOCHROME2"
            ds.set_pixel_data(4095 - pixels if photometric == "MONOCHROME1" else pixels, photometric, 12,
                              generate_instance_uid=False)
            ds.WindowCenter, ds.WindowWidth = 2000, 3000
        path = staging / f"patient_{number // 10:03d}" / f"IM{number:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    staging.rename(folder)


def timed_import(source: Path, out: Path, size: int, workers: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, images added) of one import into the fresh folder `out`."""
    start, cpu = time.perf_counter(), time.process_time()
    result = import_dicom(ImportDicomConfig(str(source), str(out), size=size, workers=workers))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    shutil.rmtree(out)
    return seconds, cpu_seconds, result.added


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "cxr-bench-dicom"))
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--source-size", type=int, default=1024)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = Path(args.data) / f"{args.files}x{args.source_size}"
    if not data.is_dir():
        print(f"writing {args.files} DICOM files of {args.source_size} px into {data} ...", flush=True)
        write_files(data, args.files, args.source_size)
    files = sorted(p for p in data.rglob("*") if p.is_file())
    for path in files:   # warm the page cache so both variants read from memory
        path.read_bytes()
    cores = os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="cxr-bench-dicom-out-"))
    print(f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.0f} MB; output {args.size} px; "
          f"{cores} cores; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    best: dict[int, tuple[float, float, int]] = {}
    try:
        for run in range(args.repeat):
            for workers in (1, cores):
                measured = timed_import(data, scratch / f"out-{run}-{workers}", args.size, workers)
                print(f"  run {run + 1}: {workers} thread(s): {measured[0]:.2f} s", flush=True)
                if workers not in best or measured[0] < best[workers][0]:
                    best[workers] = measured
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'threads':>8} {'best s':>8} {'images/s':>9} {'CPU s':>7}")
    for workers, (seconds, cpu_seconds, added) in sorted(best.items()):
        print(f"{workers:>8} {seconds:>8.2f} {added / seconds:>9.1f} {cpu_seconds:>7.2f}")
    if cores in best and 1 in best and cores != 1:
        print(f"speed-up with {cores} threads: {best[1][0] / best[cores][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
