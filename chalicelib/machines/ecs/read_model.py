"""The members of ECS's answers lambdalet reads, and botocore's model cut down to them.

botocore's JSON parser walks every member of a structure's *model* for every
structure it parses (``parsers.BaseJSONParser._handle_structure``): a
DescribeTasks page of 100 tasks walks Task's 38 members and each
Container's 19, present or not. That walk was half of the CPU of a
10,000-task listing. The client's model keeps only what ``status.py``,
``identity.py`` and ``insights.py`` read, so the parser — botocore's own,
errors and metadata included — does that much less; an answer's other
members are left out of the parsed dicts. Read a new member of a task?
Add it here first (tests/test_ecs_read_model.py checks the readers against these).
"""

from __future__ import annotations

import os

from botocore.loaders import Loader

# shape name -> the members kept (the request shapes are untouched: these are answers only)
READ = {
    "Task": ("taskArn", "taskDefinitionArn", "lastStatus", "desiredStatus", "createdAt", "startedAt",
             "stoppingAt", "stoppedAt", "executionStoppedAt", "stopCode", "stoppedReason", "version",
             "group", "startedBy", "tags", "attachments", "containers"),
    "Container": ("name", "image", "imageDigest", "runtimeId", "lastStatus", "exitCode", "reason",
                  "healthStatus", "networkInterfaces"),
    "Attachment": ("type", "details"),
    "NetworkInterface": ("privateIpv4Address",),
}


def read_model(model: dict) -> dict:
    """ECS's service model with the shapes of ``READ`` cut to their members (pure: a new dict)."""
    shapes = dict(model["shapes"])
    for name, keep in READ.items():
        shape = shapes[name]
        shapes[name] = {**shape, "members": {k: v for k, v in shape["members"].items() if k in keep}}
    return {**model, "shapes": shapes}


class ReadModelLoader(Loader):
    """botocore's data loader, answering ECS's service model cut to ``READ``."""

    def load_service_model(self, service_name, type_name, api_version=None):
        model = super().load_service_model(service_name, type_name, api_version)
        return read_model(model) if (service_name, type_name) == ("ecs", "service-2") else model


def loader(data_path: str | None) -> ReadModelLoader:
    """The loader for a session whose ``data_path`` setting (AWS_DATA_PATH) is ``data_path``,
    as botocore's ``create_loader`` builds it."""
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else None
    return ReadModelLoader(extra_search_paths=paths)
