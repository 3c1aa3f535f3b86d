"""Where the test world's recorded fixtures live: `tests/fixtures/` (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = FIXTURES / "kube-apiserver-1.36"
GOLDEN = SAMPLES / "golden"
FLY_SPEC = FIXTURES / "fly" / "fly-machines-swagger.json"
FLY_SPEC_2026 = FIXTURES / "fly" / "machine-config-2026.json"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())
