"""botocore's ECS model, with a task handed over as ECS sent it.

botocore's JSON parser walks every member of a structure's *model* for every
structure it parses (``parsers.BaseJSONParser._handle_structure``): a
DescribeTasks page of 100 tasks walks Task's 38 members and each of its
Containers' 19, present or not — half of the CPU of a 10,000-task listing,
for a result equal to the JSON itself (ECS's tasks hold no blobs, and this
client leaves timestamps as the epoch numbers ECS sends). Marked a
``document`` in the client's model, a Task is returned by the same parser as
the JSON value it is, without the walk. Everything else (requests, errors,
metadata, the other answers) is botocore's as usual.
"""

from __future__ import annotations

import os

from botocore.loaders import Loader

AS_SENT = ("Task",)  # answer shapes only: no request holds one


def read_model(model: dict) -> dict:
    """ECS's service model with the ``AS_SENT`` shapes marked documents (pure: a new dict)."""
    shapes = dict(model["shapes"])
    for name in AS_SENT:
        shapes[name] = {**shapes[name], "document": True}
    return {**model, "shapes": shapes}


class ReadModelLoader(Loader):
    """botocore's data loader, answering ECS's service model through ``read_model``."""

    def load_service_model(self, service_name, type_name, api_version=None):
        model = super().load_service_model(service_name, type_name, api_version)
        return read_model(model) if (service_name, type_name) == ("ecs", "service-2") else model


def loader(data_path: str | None) -> ReadModelLoader:
    """The loader for a session whose ``data_path`` setting (AWS_DATA_PATH) is ``data_path``,
    as botocore's ``create_loader`` builds it."""
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else None
    return ReadModelLoader(extra_search_paths=paths)
