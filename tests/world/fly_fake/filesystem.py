"""What a Fly machine's containers see on disk, in the fake's workload simulation.

Each container of a multi-container machine runs from its own image, so it has
its own root filesystem (holding its ``files``); a single-container machine has
one (the machine's ``files``). A machine ``volumes[]`` entry with a ``temp_dir``
is one directory shared by every container that mounts it
(``containers[].mounts[]``: ``name``, ``path``): fly-go ``TempDirVolume``, "an
ephemeral directory tied to the lifecycle of a Machine ... used as scratch space,
to communicate between containers" (sources in tests/fixtures/fly/README.md).

Scripts read and write these files through the few shell commands the fake
interprets (``run``): ``echo``/``printf`` with ``>``/``>>``, ``cat``, ``test -e/-f/-s``,
``touch``, ``cp``, ``rm``, in the order Pilot starts the containers. Timing and
everything else stay ``program_of``'s (tests/world/fargate_plane.py).
"""

from __future__ import annotations

import posixpath
from collections import defaultdict

from tests.world.fargate_plane import _SHELLS, _commands

# Commands program_of runs at once with status 0 and that touch no file here.
_NO_FILES = ("true", ":", "set", "mkdir", "base64", "chmod")


class MachineFS:
    """The machine's files: ``roots[container]`` and ``volumes[name]``, each path -> bytes."""

    def __init__(self, volumes: list[str], mounts: dict[str, list[tuple[str, str]]],
                 files: dict[tuple[str, str], tuple[bytes, int]]):
        self.volumes: dict[str, dict[str, bytes]] = {name: {} for name in volumes}
        self.roots: dict[str, dict[str, bytes]] = defaultdict(dict)
        # container -> [(mount path, volume)], the deepest first
        self.mounts = {c: sorted(((posixpath.normpath(p), v) for p, v in found), key=lambda m: -len(m[0]))
                       for c, found in mounts.items()}
        for (owner, path), (data, _mode) in files.items():
            self.roots[owner][posixpath.normpath(path)] = data

    def _where(self, container: str, path: str) -> tuple[dict[str, bytes], str]:
        path = posixpath.normpath(posixpath.join("/", path))
        for mount, volume in self.mounts.get(container, []):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return self.volumes[volume], posixpath.relpath(path, mount)
        return self.roots[container], path

    def read(self, container: str, path: str) -> bytes | None:
        store, key = self._where(container, path)
        return store.get(key)

    def write(self, container: str, path: str, data: bytes, *, append: bool = False) -> None:
        store, key = self._where(container, path)
        store[key] = (store.get(key, b"") if append else b"") + data

    def remove(self, container: str, path: str) -> bool:
        store, key = self._where(container, path)
        return store.pop(key, None) is not None


def _redirect(words: list[str]) -> tuple[list[str], str | None, bool]:
    """(words without the redirection, target path, append?) for ``> f``, ``>> f``, ``>f``, ``>>f``."""
    for i, word in enumerate(words):
        if word.startswith(">"):
            append = word.startswith(">>")
            target = word[2 if append else 1:]
            rest = words[i + 1:]
            if not target and rest:
                target, rest = rest[0], rest[1:]
            return words[:i] + rest, target or None, append
    return words, None, False


def run(fs: MachineFS, container: str, argv: list[str]) -> tuple[list[str], int | None]:
    """What ``argv`` prints as ``container`` and the status it ends with (None: runs on),
    reading and writing ``fs``. The control flow is program_of's: ``;`` and ``&&``,
    ``exit``, ``sleep``; an unknown command runs on."""
    if len(argv) >= 3 and argv[0] in _SHELLS and argv[1] == "-c":
        try:
            commands = _commands(argv[2])
        except ValueError:
            return ["sh: syntax error: unterminated quoted string"], 2
    else:
        commands = [(";", list(argv))] if argv else []
    printed: list[str] = []
    code, skip = 0, False
    for sep, words in commands:
        skip = sep == "&&" and (skip or code != 0)
        if skip:
            continue
        words, target, append = _redirect(words)
        cmd, args = (words[0], words[1:]) if words else (":", [])
        out: bytes | None = None
        if cmd == "sleep":
            if not args or args[0] == "infinity":
                return printed, None
            try:
                float(args[0].rstrip("s"))
            except ValueError:
                return printed, None
            code = 0
        elif cmd == "echo":
            out, code = (" ".join(args) + "\n").encode(), 0
        elif cmd == "printf":
            out, code = (args[0].replace("\\n", "\n").encode() if args else b""), 0
        elif cmd == "cat":
            out, code = b"", 0
            for path in args:
                data = fs.read(container, path)
                if data is None:
                    printed.append(f"cat: can't open '{path}': No such file or directory")
                    code = 1
                else:
                    out += data
        elif cmd == "test":
            flag, path = (args[0], args[1]) if len(args) == 2 else ("-e", args[0] if args else "")
            data = fs.read(container, path)
            code = 0 if data is not None and (flag != "-s" or data) else 1
        elif cmd == "touch":
            for path in args:
                if fs.read(container, path) is None:
                    fs.write(container, path, b"")
            code = 0
        elif cmd == "cp" and len(args) == 2:
            data = fs.read(container, args[0])
            code = 1 if data is None else 0
            if data is not None:
                fs.write(container, args[1], data)
        elif cmd == "rm":
            for path in (a for a in args if not a.startswith("-")):
                fs.remove(container, path)
            code = 0
        elif cmd in _NO_FILES:
            code = 0
        elif cmd == "false":
            code = 1
        elif cmd == "exit":
            try:
                return printed, int(args[0]) % 256 if args else code
            except ValueError:
                return printed, 2
        else:
            return printed, None  # beyond this interpreter: runs on, as program_of says
        if out is not None:
            if target:
                fs.write(container, target, out, append=append)
            else:
                printed += out.decode(errors="replace").splitlines()
    return printed, code
