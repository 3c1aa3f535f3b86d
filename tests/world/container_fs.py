"""What a pod's containers see on disk, in the workload simulation of both
cloud fakes: a Fly machine's containers (fly_fake) and an ECS task's
(fargate_plane).

Fly: each container of a multi-container machine runs from its own image, so it has
its own root filesystem (holding its ``files``); a single-container machine has
one (the machine's ``files``). A machine ``volumes[]`` entry with a ``temp_dir``
is one directory shared by every container that mounts it
(``containers[].mounts[]``: ``name``, ``path``): fly-go ``TempDirVolume``, "an
ephemeral directory tied to the lifecycle of a Machine ... used as scratch space,
to communicate between containers" (sources in tests/fixtures/fly/README.md).

ECS: a task definition's ``volumes`` (no host path: Fargate task storage) are
shared by the containers whose ``mountPoints`` name them (``sourceVolume``,
``containerPath``); each container has its own root filesystem (ECS "Fargate
task storage" and "Bind mounts" documentation).

Scripts read and write these files through the few shell commands the fake
interprets (``run``): ``echo``/``printf`` with ``>``/``>>``, ``cat``, ``test -e/-f/-s``,
``touch``, ``cp``, ``rm``, in the order the containers start (Pilot's depends_on, ECS's dependsOn). Timing and
everything else stay ``program_of``'s (tests/world/fargate_plane.py).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import shlex
from collections import defaultdict
from collections.abc import Mapping

SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}


def shell_commands(script: str) -> list[tuple[str, list[str]]]:
    """``[(separator before, argv)]``; separators are ``;`` (or a newline) and ``&&``."""
    lexer = shlex.shlex(script.replace("\n", ";"), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    out: list[tuple[str, list[str]]] = []
    sep, words = ";", []
    for token in lexer:
        if token in (";", "&&"):
            if words:
                out.append((sep, words))
            sep, words = token, []
        elif set(token) <= set(";&|"):  # ||, |, & ...: beyond this interpreter
            return [(";", ["<unsupported>"])]
        else:
            words.append(token)
    if words:
        out.append((sep, words))
    return out


# Commands program_of runs at once with status 0 and that touch no file here.
_NO_FILES = ("true", ":", "set", "mkdir", "chmod")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(word: str, env: Mapping[str, str]) -> str:
    """$NAME and ${NAME} from the container's environment, as sh expands them (unset: empty)."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word)


def _printf(args: list[str]) -> bytes:
    """printf FORMAT [ARG...] for the %s and \\n a script uses."""
    if not args:
        return b""
    values = iter(args[1:])
    text = re.sub(r"%s", lambda _: next(values, ""), args[0]).replace("\\n", "\n")
    return text.encode()


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


def run(fs: MachineFS, container: str, argv: list[str],
        env: Mapping[str, str] | None = None) -> tuple[list[tuple[float, str]], int | None]:
    """What ``argv`` prints as ``container`` ((seconds after start, line), as
    Program.output) and the status it ends with (None: runs on), reading and
    writing ``fs`` at once; with ``env``, $NAME in a script is expanded from it
    (ECS: the container's environment and secrets). The control flow is program_of's: ``;`` and ``&&``,
    ``exit``, ``sleep``; an unknown command runs on."""
    if len(argv) >= 3 and argv[0] in SHELLS and argv[1] == "-c":
        try:
            commands = shell_commands(argv[2])
        except ValueError:
            return [(0.0, "sh: syntax error: unterminated quoted string")], 2
    else:
        commands = [(";", list(argv))] if argv else []
    printed: list[tuple[float, str]] = []
    code, skip, elapsed = 0, False, 0.0
    for sep, words in commands:
        skip = sep == "&&" and (skip or code != 0)
        if skip:
            continue
        words, target, append = _redirect(words)
        if env is not None:
            words = [_expand(w, env) for w in words]
            target = _expand(target, env) if target else target
        cmd, args = (words[0], words[1:]) if words else (":", [])
        out: bytes | None = None
        if cmd == "sleep":
            if not args or args[0] == "infinity":
                return printed, None
            try:
                elapsed += float(args[0].rstrip("s"))
            except ValueError:
                return printed, None
            code = 0
        elif cmd == "echo":
            out, code = (" ".join(args) + "\n").encode(), 0
        elif cmd == "printf":
            out, code = _printf(args), 0
        elif cmd == "base64" and "-d" in args:
            files = [a for a in args if not a.startswith("-")]
            data = fs.read(container, files[0]) if files else None
            try:
                out, code = (base64.b64decode(data, validate=False), 0) if data is not None else (None, 1)
            except (binascii.Error, ValueError):
                out, code = None, 1
        elif cmd == "cat":
            out, code = b"", 0
            for path in args:
                data = fs.read(container, path)
                if data is None:
                    printed.append((elapsed, f"cat: can't open '{path}': No such file or directory"))
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
                printed += [(elapsed, line) for line in out.decode(errors="replace").splitlines()]
    return printed, code
