"""Dynamic admission, as kube-apiserver does it: MutatingWebhookConfiguration and
ValidatingWebhookConfiguration objects (admissionregistration.k8s.io/v1), and the
chain that calls their webhooks with AdmissionReview v1 requests shaped like
tests/fixtures/kube-apiserver-1.36/admission-*.json.

What is simulated: rules (operations, apiGroups, apiVersions, resources with
``pods``, ``pods/binding``, ``pods/*``, ``*``, ``*/*``, scope), namespaceSelector,
objectSelector (matched against the object *and* the old object; a Binding has
no labels, so an objectSelector never selects a ``pods/binding`` request — as in
kube-apiserver), failurePolicy (default Fail), timeoutSeconds (default 10, sent
as ``?timeout=Ns``), sideEffects (None/NoneOnDryRun only, as the v1 API
requires), mutating webhooks in name order before validating ones, JSONPatch
responses applied, the real error messages for refusals, unreachable and
timed-out webhooks. Where kube-apiserver calls them: pods CREATE (mutating
before the object gets its uid, validating after), DELETE (object null, pod in
oldObject), ``pods/binding`` CREATE. Not simulated: ``matchConditions`` (CEL —
a configuration using them is refused with 422 rather than silently treated as
matching), reinvocationPolicy IfNeeded, UPDATE/CONNECT calls, service
references other than through ``sinks``.

Transport: a webhook's URL goes over HTTP (urllib, timeout = timeoutSeconds)
unless a callable registered in ``AdmissionChain.sinks`` owns its prefix:
``sink(url, body, timeout) -> (status, body)``; raise ConnectionRefusedError /
TimeoutError to be unreachable / slow. A callable sink that answers after the
timeout counts as timed out (it cannot be interrupted).
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Callable

from . import errors as E
from .patch import PatchError, json_patch
from .resources import RESOURCES, ResourceType, Strategy
from .selectors import getter

Sink = Callable[[str, bytes, float], tuple[int, bytes]]
GROUP = "admissionregistration.k8s.io"
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")


# ---------------------------------------------------------------------- the two resources

class WebhookConfigurationStrategy(Strategy):
    """Defaulting and validation of admissionregistration.k8s.io/v1 webhook configurations."""

    has_generation = True

    def __init__(self, mutating: bool):
        self.mutating = mutating

    def scheme_default(self, obj):
        for hook in obj.get("webhooks") or []:
            hook.setdefault("failurePolicy", "Fail")
            hook.setdefault("matchPolicy", "Equivalent")
            hook.setdefault("namespaceSelector", {})
            hook.setdefault("objectSelector", {})
            hook.setdefault("timeoutSeconds", 10)
            if self.mutating:
                hook.setdefault("reinvocationPolicy", "Never")
            for rule in hook.get("rules") or []:
                rule.setdefault("scope", "*")
            svc = (hook.get("clientConfig") or {}).get("service")
            if svc is not None:
                svc.setdefault("port", 443)

    def _causes(self, obj) -> list[dict]:
        causes, names = [], set()
        for i, hook in enumerate(obj.get("webhooks") or []):
            at = f"webhooks[{i}]"
            name = hook.get("name") or ""
            if name.count(".") < 2:
                causes.append(E.cause_invalid(f"{at}.name", name, "should be a domain with at least three segments separated by dots"))
            if name in names:
                causes.append(E.cause_duplicate(f"{at}.name", name))
            names.add(name)
            if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
                causes.append({"reason": "FieldValueNotSupported", "field": f"{at}.sideEffects",
                               "message": f'Unsupported value: "{hook.get("sideEffects", "")}": supported values: "None", "NoneOnDryRun"'})
            if "v1" not in (hook.get("admissionReviewVersions") or []):
                causes.append(E.cause_invalid(f"{at}.admissionReviewVersions", hook.get("admissionReviewVersions"),
                                              "must include at least one of v1"))
            if hook.get("failurePolicy") not in ("Fail", "Ignore"):
                causes.append(E.cause_invalid(f"{at}.failurePolicy", hook.get("failurePolicy"), 'supported values: "Fail", "Ignore"'))
            if not 1 <= int(hook.get("timeoutSeconds", 10)) <= 30:
                causes.append(E.cause_invalid(f"{at}.timeoutSeconds", hook.get("timeoutSeconds"), "the timeout value must be between 1 and 30 seconds"))
            cc = hook.get("clientConfig") or {}
            if bool(cc.get("url")) == bool(cc.get("service")):
                causes.append(E.cause_required(f"{at}.clientConfig") | {"message": "Required value: exactly one of url or service is required"})
            if hook.get("matchConditions"):
                causes.append(E.cause_forbidden(f"{at}.matchConditions",
                                                "kube_sim does not evaluate CEL matchConditions; scope with selectors"))
            for j, rule in enumerate(hook.get("rules") or []):
                for op in rule.get("operations") or []:
                    if op not in OPERATIONS:
                        causes.append({"reason": "FieldValueNotSupported", "field": f"{at}.rules[{j}].operations",
                                       "message": f'Unsupported value: "{op}"'})
        return causes

    def validate_create(self, obj):
        return super().validate_create(obj) + self._causes(obj)

    def validate_update(self, new, old, subresource):
        return self._causes(new)


MUTATING = ResourceType("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", GROUP, "v1", False,
                        WebhookConfigurationStrategy(True), {"metadata.name": getter("metadata.name")},
                        categories=("api-extensions",))
VALIDATING = ResourceType("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", GROUP, "v1", False,
                          WebhookConfigurationStrategy(False), {"metadata.name": getter("metadata.name")},
                          categories=("api-extensions",))

# The simulator serves them at their REST paths like any resource: registered once,
# when api.py imports this module. They are not in discovery: the golden transcript
# check wants a group's whole real entry, and the real group has four more resources.
if MUTATING not in RESOURCES:
    RESOURCES.extend([MUTATING, VALIDATING])


# ---------------------------------------------------------------------- matching

def selector_matches(selector: dict | None, labels: dict) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    selector = selector or {}
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def rule_matches(rule: dict, operation: str, group: str, version: str, resource: str, sub: str,
                 namespaced: bool) -> bool:
    if not ({"*", operation} & set(rule.get("operations") or [])):
        return False
    if not ({"*", group} & set(rule.get("apiGroups") or [])):
        return False
    if not ({"*", version} & set(rule.get("apiVersions") or [])):
        return False
    scope = rule.get("scope", "*")
    if scope == "Cluster" and namespaced or scope == "Namespaced" and not namespaced:
        return False
    for r in rule.get("resources") or []:
        res, _, want_sub = r.partition("/")
        if res not in ("*", resource):
            continue
        if r == "*/*" or ("/" not in r and not sub) or ("/" in r and want_sub in ("*", sub) and sub):
            return True
    return False


def _labels(obj) -> dict:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


# ---------------------------------------------------------------------- calling

def http_sink(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json",
                                                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError as e:
        raise e.reason if isinstance(e.reason, OSError) else ConnectionError(str(e.reason)) from None


class WebhookError(Exception):
    """The webhook could not be called or answered nonsense: failurePolicy decides."""


class AdmissionChain:
    """The apiserver's MutatingAdmissionWebhook + ValidatingAdmissionWebhook plugins."""

    def __init__(self, api):
        self.api = api
        self.sinks: dict[str, Sink] = {}
        # Every call made: {"webhook", "url", "request", "response" | "error", "ignored"}: what tests look at.
        self.calls: list[dict] = []

    # -- the plugin entry points ------------------------------------------------
    def mutate(self, ctx, operation: str, obj: dict | None, old: dict | None, options: dict, dry_run: bool,
               kind: str) -> dict | None:
        for config, hook in self._hooks(MUTATING, ctx, operation, obj, old):
            response = self._call(config, hook, ctx, operation, obj, old, options, dry_run, kind)
            if response is None:
                continue
            self._refuse_if_denied(hook, response)
            patch = response.get("patch")
            if patch and obj is not None:
                if response.get("patchType") != "JSONPatch":
                    raise E.ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook '
                                     f'"{hook["name"]}": unsupported patch type "{response.get("patchType")}"')
                try:
                    obj = json_patch(obj, json.loads(base64.b64decode(patch)))
                except (PatchError, ValueError) as err:
                    raise E.ApiError(500, "InternalError", f"Internal error occurred: {err}") from None
        return obj

    def validate(self, ctx, operation: str, obj: dict | None, old: dict | None, options: dict, dry_run: bool,
                 kind: str) -> None:
        for config, hook in self._hooks(VALIDATING, ctx, operation, obj, old):
            response = self._call(config, hook, ctx, operation, obj, old, options, dry_run, kind)
            if response is None:
                continue
            if response.get("patch"):
                self._fail(hook, "validating webhook may not return a patch")
                continue
            self._refuse_if_denied(hook, response)

    # -- internals ------------------------------------------------------------------
    def _hooks(self, rt: ResourceType, ctx, operation, obj, old):
        group, version, resource, sub = ctx.rt.group, ctx.rt.version, ctx.rt.plural, ctx.subresource
        ns_labels = None
        for config in sorted(self.api.store.list(rt.store_key), key=lambda c: c["metadata"]["name"]):
            for hook in config.get("webhooks") or []:
                if not any(rule_matches(r, operation, group, version, resource, sub, ctx.rt.namespaced)
                           for r in hook.get("rules") or []):
                    continue
                if ctx.rt.namespaced:
                    if ns_labels is None:
                        ns = self.api.store.get("namespaces", "", ctx.namespace)
                        ns_labels = _labels(ns)
                    if not selector_matches(hook.get("namespaceSelector"), ns_labels):
                        continue
                selector = hook.get("objectSelector")
                if not (selector_matches(selector, _labels(obj)) or (old is not None and selector_matches(selector, _labels(old)))):
                    continue
                yield config, hook

    def _review(self, ctx, operation, obj, old, options, dry_run, kind) -> dict:
        gvk = {"group": ctx.rt.group, "version": ctx.rt.version, "kind": kind}
        gvr = {"group": ctx.rt.group, "version": ctx.rt.version, "resource": ctx.rt.plural}
        request = {"uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr}
        if ctx.subresource:
            request["subResource"] = ctx.subresource
        request |= {"requestKind": gvk, "requestResource": gvr}
        if ctx.subresource:
            request["requestSubResource"] = ctx.subresource
        name = ctx.name or ((obj or old or {}).get("metadata") or {}).get("name", "")
        if name:
            request["name"] = name
        if ctx.namespace:
            request["namespace"] = ctx.namespace
        user = {k: v for k, v in ctx.user.items() if k in ("username", "uid", "groups", "extra")}
        request |= {"operation": operation, "userInfo": user, "object": obj, "oldObject": old,
                    "dryRun": dry_run, "options": options}
        return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}

    def _url(self, hook) -> str:
        cc = hook.get("clientConfig") or {}
        url = cc.get("url")
        if not url:
            svc = cc["service"]
            url = f'https://{svc["name"]}.{svc["namespace"]}.svc:{svc.get("port", 443)}{svc.get("path", "")}'
        return url + ("&" if "?" in url else "?") + f'timeout={int(hook.get("timeoutSeconds", 10))}s'

    def _sink(self, url: str) -> Sink:
        owners = [prefix for prefix in self.sinks if url.startswith(prefix)]
        return self.sinks[max(owners, key=len)] if owners else http_sink

    def _call(self, config, hook, ctx, operation, obj, old, options, dry_run, kind) -> dict | None:
        """The webhook's response, or None when it failed and failurePolicy is Ignore."""
        review = self._review(ctx, operation, obj, old, options, dry_run, kind)
        url, timeout = self._url(hook), float(hook.get("timeoutSeconds", 10))
        record = {"webhook": hook["name"], "configuration": config["metadata"]["name"], "url": url,
                  "request": review["request"]}
        self.calls.append(record)
        started = time.monotonic()
        try:
            try:
                status, body = self._sink(url)(url, json.dumps(review).encode(), timeout)
            except TimeoutError:
                raise WebhookError(f'Post "{url}": context deadline exceeded') from None
            except (ConnectionRefusedError, ConnectionError, OSError) as err:
                host = urllib.parse.urlsplit(url).netloc
                detail = "connect: connection refused" if isinstance(err, ConnectionRefusedError) else str(err)
                raise WebhookError(f'Post "{url}": dial tcp {host}: {detail}') from None
            if time.monotonic() - started > timeout:
                raise WebhookError(f'Post "{url}": context deadline exceeded')
            if status != 200:
                text = body.decode(errors="replace")[:200] if body else ""
                raise WebhookError(f'an error on the server ("{text}") has prevented the request from succeeding'
                                   if text else f"the server responded with the status code {status} but did not "
                                   "return more information")
            try:
                answer = json.loads(body)
            except ValueError as err:
                raise WebhookError(f"failed to decode the response: {err}") from None
            if not isinstance(answer, dict) or answer.get("apiVersion") != "admission.k8s.io/v1" or \
                    answer.get("kind") != "AdmissionReview" or not isinstance(answer.get("response"), dict):
                raise WebhookError("the response is not an admission.k8s.io/v1 AdmissionReview")
            response = answer["response"]
            if response.get("uid") != review["request"]["uid"]:
                raise WebhookError(f'expected response.uid="{review["request"]["uid"]}", got "{response.get("uid")}"')
            record["response"] = response
            return response
        except WebhookError as err:
            record["error"] = str(err)
            return self._fail(hook, str(err), record)

    def _fail(self, hook, why: str, record: dict | None = None):
        if hook.get("failurePolicy", "Fail") == "Ignore":
            if record is not None:
                record["ignored"] = True
            return None
        message = f'failed calling webhook "{hook["name"]}": failed to call webhook: {why}'
        raise E.ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})

    @staticmethod
    def _refuse_if_denied(hook, response: dict) -> None:
        if response.get("allowed") is True:
            return
        status = response.get("status") or {}
        code = status.get("code") or 403
        said = status.get("message") or ""
        message = (f'admission webhook "{hook["name"]}" denied the request: {said}' if said else
                   f'admission webhook "{hook["name"]}" denied the request without explanation')
        raise E.ApiError(code, status.get("reason") or "", message, status.get("details"))
