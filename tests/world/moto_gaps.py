"""What moto 5.2 lacks for infra/aws/lambdalet.yaml and `chalice deploy`; importing this
module fills the gaps.

1. API Gateway ImportRestApi/PutRestApi: moto takes only OpenAPI 3 documents, while API
   Gateway imports OpenAPI 2.0 (Swagger) and 3.0 alike ("Develop REST APIs using OpenAPI in
   API Gateway"), and chalice deploys Swagger 2.0. What moto reads of a document (`paths`,
   their methods, responses and `x-amazon-apigateway-integration`) is the same in both
   versions, so a Swagger 2.0 document is handed over as such. moto also reads
   `info.description` unconditionally, which both versions make optional (only `title` and
   `version` are required) and chalice leaves out: an absent one is read as none.

2. CloudFormation's AWS::SecretsManager::Secret: moto creates no secret for it (it logs "No Moto CloudFormation support"), so this adds
the resource type over moto's own Secrets Manager backend, as the CloudFormation reference
documents it (AWS::SecretsManager::Secret):
- `Ref` returns the secret's ARN;
- `SecretString` sets the value, `GenerateSecretString` generates one (here with
  GetRandomPassword's rules: PasswordLength, ExcludeCharacters, ExcludePunctuation, ...),
  and with neither the secret is created with no value (no version);
- `Name`, `Description`, `KmsKeyId`, `Tags` as in CreateSecret.
Importing this module registers it (moto finds models by subclass, cached: the caches are
cleared).
"""

from __future__ import annotations

import json
from typing import Any

from moto.apigateway.models import APIGatewayBackend
from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel
from moto.secretsmanager.models import secretsmanager_backends


def _as_moto_reads_it(api_doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(api_doc)
    if doc.pop("swagger", None) is not None:
        doc["openapi"] = "3.0.0"
    doc["info"] = {"description": None, **doc.get("info", {})}
    return doc


if not getattr(APIGatewayBackend, "_lambdalet_swagger", False):
    _import, _put = APIGatewayBackend.import_rest_api, APIGatewayBackend.put_rest_api
    APIGatewayBackend.import_rest_api = lambda self, api_doc, fail_on_warnings: _import(
        self, _as_moto_reads_it(api_doc), fail_on_warnings)
    APIGatewayBackend.put_rest_api = lambda self, function_id, api_doc, fail_on_warnings, mode="merge": _put(
        self, function_id, _as_moto_reads_it(api_doc), fail_on_warnings, mode)
    APIGatewayBackend._lambdalet_swagger = True


class CfnSecret(CloudFormationModel):
    def __init__(self, arn: str, name: str) -> None:
        self.arn = arn
        self.name = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "CfnSecret":
        props = cloudformation_json.get("Properties", {})
        backend = secretsmanager_backends[account_id][region_name]
        value = props.get("SecretString")
        generate = props.get("GenerateSecretString")
        if generate is not None:
            value = json.loads(backend.get_random_password(
                password_length=int(generate.get("PasswordLength", 32)),
                exclude_characters=generate.get("ExcludeCharacters", ""),
                exclude_numbers=bool(generate.get("ExcludeNumbers", False)),
                exclude_punctuation=bool(generate.get("ExcludePunctuation", False)),
                exclude_uppercase=bool(generate.get("ExcludeUppercase", False)),
                exclude_lowercase=bool(generate.get("ExcludeLowercase", False)),
                include_space=bool(generate.get("IncludeSpace", False)),
                require_each_included_type=bool(generate.get("RequireEachIncludedType", True)),
            ))["RandomPassword"]
        name = props.get("Name", resource_name)
        created = backend.create_secret(
            name=name, secret_string=value, secret_binary=None, description=props.get("Description"),
            tags=props.get("Tags"), kms_key_id=props.get("KmsKeyId"), client_request_token=None,
            replica_regions=[], force_overwrite=False)
        return cls(json.loads(created)["ARN"], name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        backend = secretsmanager_backends[account_id][region_name]
        name = cloudformation_json.get("Properties", {}).get("Name", resource_name)
        backend.delete_secret(name, recovery_window_in_days=None, force_delete_without_recovery=True)

    def is_created(self) -> bool:
        return True


for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    cached.cache_clear()
