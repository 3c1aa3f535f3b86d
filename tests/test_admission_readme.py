"""The README's table of supported pod features is chalicelib/pod_spec.FEATURES,
rendered. After changing the table in the code:
    .venv/bin/python -m tests.test_admission_readme   (rewrites the README block)
"""

from __future__ import annotations

import re
from pathlib import Path

from chalicelib.pod_spec import FEATURES

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- features:start (generated from chalicelib/pod_spec.FEATURES) -->", "<!-- features:end -->"


def render() -> str:
    rows = ["| pod field | ECS Fargate | Fly Machines | what happens / what to do |", "| --- | --- | --- | --- |"]
    rows += [f"| `{f.field}` | {f.ecs} | {f.fly} | {f.note.replace('|', '/')} |" for f in FEATURES]
    return "\n".join([START, *rows, END])


def block(text: str) -> str | None:
    m = re.search(re.escape(START) + ".*?" + re.escape(END), text, re.S)
    return m.group(0) if m else None


def test_readme_table_is_the_code_table():
    assert block(README.read_text()) == render(), "run: .venv/bin/python -m tests.test_admission_readme"


if __name__ == "__main__":
    text = README.read_text()
    README.write_text(text.replace(block(text), render()) if block(text) else text)
