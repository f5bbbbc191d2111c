"""Recognise a synthetic export folder (NIH layout + `manifest.json`), so it is never taken for real data."""
from __future__ import annotations

import json
from pathlib import Path

from core.export.export import EXPORT_FORMAT, MANIFEST_NAME


def read_export_manifest(folder) -> dict | None:
    """The manifest of a folder written by `export`, or None for any other folder (or an unreadable manifest)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == EXPORT_FORMAT else None
