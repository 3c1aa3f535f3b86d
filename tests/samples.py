"""The payloads captured from a real kube-apiserver (../shared/samples), located from the repo."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO.parent / "shared" / "samples" / "kube-apiserver-1.36"


def sample(name: str) -> dict:
    path = SAMPLES / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the shared/ folder must sit beside the repo")
    return json.loads(path.read_text())
