"""Fault switches: make the next matching API calls fail as kube-apiserver does
under trouble, for the chaos run and focused tests.

Each fault is (verb, resource, status): ``verb`` as the authorizer sees it
(get, list, create, update, patch, delete), ``resource`` with its subresource
(``pods/status``, ``leases``); ``user`` limits it to one caller. The bodies are
the apiserver's ``Status`` objects (staging/src/k8s.io/apimachinery/pkg/api/
errors/errors.go): 429 TooManyRequests with ``Retry-After`` (NewTooManyRequests,
as API Priority and Fairness rejects), 500 InternalError, 504 Timeout
(NewTimeoutError: "the server was unable to return a response in the time
allotted"), 409 Conflict on a write ("the object has been modified; please
apply your changes to the latest version and try again"), and 410 Expired on a
list with a ``continue`` token (NewResourceExpired: "The provided continue
parameter is too old to display a consistent list result...").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from . import errors as E


@dataclass
class Fault:
    verb: str
    resource: str
    status: int
    times: int = 1
    user: str | None = None
    retry_after: int = 1
    continued_only: bool = False  # 410: only lists that carry a continue token


class Faults:
    def __init__(self):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.injected = 0

    def add(self, verb: str, resource: str, status: int, **kwargs) -> None:
        with self._lock:
            self._faults.append(Fault(verb, resource, status, **kwargs))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, verb: str, resource: str, user: str | None, continued: bool) -> E.ApiError | None:
        """The error the next matching call gets, consuming one of its fault's times."""
        with self._lock:
            for fault in self._faults:
                if fault.verb != verb or fault.resource != resource or (fault.user and fault.user != user):
                    continue
                if fault.continued_only and not continued:
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                self.injected += 1
                return _error(fault, resource)
        return None


def _error(fault: Fault, resource: str) -> E.ApiError:
    if fault.status == 429:
        return E.ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                          {"retryAfterSeconds": fault.retry_after},
                          headers={"Retry-After": str(fault.retry_after)})
    if fault.status == 409:
        return E.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource}: the object has been '
                                           f'modified; please apply your changes to the latest version and try again',
                          {"kind": resource})
    if fault.status == 410:
        return E.ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                          "list result. You can start a new list without the continue parameter.")
    if fault.status == 504:
        return E.ApiError(504, "Timeout", "the server was unable to return a response in the time allotted, "
                                          "but may still be processing the request", {"retryAfterSeconds": 1})
    return E.ApiError(fault.status, "InternalError", "Internal error occurred: injected fault",
                      {"causes": [{"message": "injected fault"}]})
