"""``POST /jobs`` with ``init_model``: the parent resolved at submission, its architecture
inherited. Kept out of the route so that the route stays a few lines longer, not fifty.

The alias is resolved to a model id here and recorded on the job, so that a promotion
between submission and start does not change what the job starts from.
"""

import re
from typing import Any
from uuid import UUID

from fastapi.exceptions import RequestValidationError

from shared import finetune
from shared.registry import ModelRegistry
from shared.schemas import ALIAS_PATTERN, JobOptions, ModelInfo


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def parent_model(registry: ModelRegistry, ref: str) -> ModelInfo:
    """The model ``ref`` names, as a model id or an alias; a 422 on ``init_model`` if none."""
    try:
        model_id: UUID | None = UUID(ref)
    except ValueError:
        model_id = None
    if model_id is None:
        if not re.fullmatch(ALIAS_PATTERN, ref):
            raise _invalid("init_model", f"{ref!r} is neither a model id nor an alias name")
        alias = registry.get_alias(ref)
        if alias is None:
            raise _invalid("init_model", f"no alias named {ref}")
        model_id = alias.model_id
    info = registry.get_model(model_id)
    if info is None or info.deleting:
        raise _invalid("init_model", f"no model {model_id} (via {ref})")
    return info


def resolve(
    registry: ModelRegistry, given: dict[str, object], options: JobOptions | None
) -> tuple[dict[str, object], dict[str, Any]]:
    """The explicit parameters with the parent's architecture filled in, and the job
    record's fine-tuning fields; a 422 naming the field for a conflicting value."""
    if options is None:
        return given, {}
    fields: dict[str, Any] = {
        "feedback_weight": options.feedback_weight,
        "feedback_holdout": options.feedback_holdout,
    }
    if options.init_model is None:
        return given, fields
    parent = parent_model(registry, options.init_model)
    try:
        given = finetune.inherit(given, parent.params)
    except finetune.ParentConflict as exc:
        raise _invalid(exc.name, str(exc)) from None
    return given, {**fields, "init_model": options.init_model, "init_model_id": parent.id}
