"""In-memory object store with one global resourceVersion counter and a watch log.

One RLock guards everything: requests are short, and a single lock makes every
read-modify-write (conflict checks, binding, graceful delete) trivially atomic.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from .util import deepcopy


@dataclass
class WatchEvent:
    rv: int
    resource: str        # store key, e.g. "pods"
    type: str            # ADDED | MODIFIED | DELETED
    obj: dict


class Store:
    HISTORY = 20000

    def __init__(self, start_rv: int = 100):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = start_rv
        self._data: dict[str, dict[tuple[str, str], dict]] = {}
        self.history: list[WatchEvent] = []
        self.oldest_rv = start_rv  # watches from before this get 410 Gone

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def get(self, resource: str, ns: str, name: str) -> dict | None:
        with self.lock:
            o = self._data.get(resource, {}).get((ns, name))
            return deepcopy(o) if o is not None else None

    def list(self, resource: str, ns: str | None = None) -> list[dict]:
        with self.lock:
            items = [(k, v) for k, v in self._data.get(resource, {}).items() if ns is None or k[0] == ns]
            return [deepcopy(v) for _, v in sorted(items, key=lambda kv: kv[0])]

    def put(self, resource: str, obj: dict, event: str) -> dict:
        """Store obj with a fresh resourceVersion; records a watch event."""
        with self.lock:
            obj["metadata"]["resourceVersion"] = self.next_rv()
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            self._data.setdefault(resource, {})[key] = deepcopy(obj)
            self._record(resource, event, obj)
            return obj

    def remove(self, resource: str, obj: dict) -> dict:
        with self.lock:
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            self._data.get(resource, {}).pop(key, None)
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self._record(resource, "DELETED", obj)
            return obj

    def _record(self, resource, type_, obj):
        self.history.append(WatchEvent(self.rv, resource, type_, deepcopy(obj)))
        if len(self.history) > self.HISTORY:
            drop = len(self.history) - self.HISTORY
            self.oldest_rv = self.history[drop - 1].rv
            del self.history[:drop]
        self.changed.notify_all()
