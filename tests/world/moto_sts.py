"""STS's side of an EKS token, in the test world: moto answers the presigned GetCallerIdentity.

Two gaps of moto 5.2.5's STS are bridged here, each for a reason the code shows:

- moto checks no signature (moto/sts/responses.py get_caller_identity reads the access key and
  answers). Real STS recomputes the SigV4 query signature with the key's secret and the headers
  the caller sends with the URL; that is what binds a token to its cluster (the authenticator
  sends ``x-k8s-aws-id: <its cluster>``, aws-iam-authenticator pkg/token/token.go). So the
  signature is checked here with botocore's own SigV4 query signer, the secret being the one
  moto issued with the credentials (AssumeRole), as STS would know it.
- moto reads the caller's access key from the Authorization header or a SigV2 ``AWSAccessKeyId``
  parameter only (moto/core/responses.py get_access_key), never from a SigV4 presigned URL's
  ``X-Amz-Credential``; without the key it answers for a default user. The key of
  X-Amz-Credential is passed as ``AWSAccessKeyId`` too.
- moto answers the query protocol's XML whatever the Accept header says; STS answers JSON
  to ``Accept: application/json`` (what the authenticator sends and reads: token.go
  getCallerIdentityWrapper). The answer is handed on in that JSON shape.

The GET goes to the URL's own host, which moto's in-process mock (mock_aws) serves; moto's
server mode routes an unsigned GET on ``/`` to S3, so the world's STS is moto in-process.
"""
from __future__ import annotations

import hmac
import json
import urllib.parse
import xml.etree.ElementTree as ET

import requests
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ERROR = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
         "<Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>")


def _issued_secret(access_key: str) -> str | None:
    """The secret moto issued with ``access_key`` (an AssumeRole session's), or None."""
    from moto.sts.models import sts_backends

    for account in list(sts_backends):
        for partition in list(sts_backends[account]):
            role = sts_backends[account][partition].get_assumed_role_from_access_key(access_key)
            if role is not None:
                return role.secret_access_key
    return None


def signature(url: str, headers: dict, access_key: str, secret: str, token: str | None) -> str:
    """The SigV4 query signature of ``url`` (without its X-Amz-Signature) with these headers,
    computed by botocore's presigner for the credential scope and date the URL names."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature"]
    params = dict(query)
    _, date, region, service, _ = params["X-Amz-Credential"].split("/")
    unsigned = parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)).geturl()
    request = AWSRequest("GET", unsigned, headers={k: v for k, v in headers.items() if k.lower() != "accept"})
    request.context["timestamp"] = params["X-Amz-Date"]
    auth = SigV4QueryAuth(Credentials(access_key, secret, token), service, region, expires=int(params["X-Amz-Expires"]))
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)


def get_caller_identity(url: str, headers: dict) -> tuple[int, str]:
    """What STS answers to the presigned URL sent with ``headers``: (status, body)."""
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
    access_key = params.get("X-Amz-Credential", "").split("/")[0]
    secret = _issued_secret(access_key)
    if secret is None:
        return 403, ERROR.format(code="InvalidClientTokenId", message="The security token included in the request is invalid.")
    try:
        expected = signature(url, headers, access_key, secret, params.get("X-Amz-Security-Token"))
    except (KeyError, ValueError):
        return 400, ERROR.format(code="IncompleteSignature", message="The request signature is incomplete.")
    if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        return 403, ERROR.format(code="SignatureDoesNotMatch", message="The request signature we calculated does not "
                                 "match the signature you provided.")
    answer = requests.get(url + "&" + urllib.parse.urlencode({"AWSAccessKeyId": access_key}), headers=headers, timeout=10)
    if answer.status_code != 200 or "json" not in headers.get("accept", ""):
        return answer.status_code, answer.text
    fields = {e.tag.rsplit("}", 1)[-1]: e.text for e in ET.fromstring(answer.text).iter()}
    return 200, json.dumps({"GetCallerIdentityResponse": {
        "GetCallerIdentityResult": {k: fields.get(k) for k in ("Account", "Arn", "UserId")},
        "ResponseMetadata": {"RequestId": fields.get("RequestId")}}})
