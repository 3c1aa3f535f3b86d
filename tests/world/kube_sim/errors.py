"""Kubernetes `Status` error bodies, shaped exactly like kube-apiserver's."""
from __future__ import annotations


class ApiError(Exception):
    """An error the API answers with a `kind: Status` body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict:
        b = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason}
        if self.details is not None:
            b["details"] = self.details
        b["code"] = self.code
        return b


def _details(name, rt_plural, group=""):
    d = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = rt_plural
    return d


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(plural, group)} "{name}" not found',
                    _details(name, plural, group))


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(plural, group)} "{name}" already exists',
                    _details(name, plural, group))


def conflict(plural: str, name: str, group: str = "", msg: str | None = None) -> ApiError:
    msg = msg or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {msg}',
                    _details(name, plural, group))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, causes: list[dict], group: str = "") -> ApiError:
    """422 Invalid; causes are {reason, message, field} like field.ErrorList."""
    parts = [f'{c["field"]}: {c["message"]}' for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qk = f"{kind}.{group}" if group else kind
    details = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = causes
    return ApiError(422, "Invalid", f'{qk} "{name}" is invalid: {joined}', details)


def cause_invalid(field: str, value, detail: str) -> dict:
    import json
    v = json.dumps(value) if isinstance(value, str) else str(value)
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {v}: {detail}", "field": field}


def cause_required(field: str) -> dict:
    return {"reason": "FieldValueRequired", "message": "Required value", "field": field}


def cause_forbidden(field: str, detail: str) -> dict:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}


def cause_duplicate(field: str, value) -> dict:
    import json
    return {"reason": "FieldValueDuplicate", "message": f"Duplicate value: {json.dumps(value)}", "field": field}


def success_status(code: int = 200, details: dict | None = None) -> dict:
    b = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        b["details"] = details
    b["code"] = code
    return b
