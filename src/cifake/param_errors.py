"""One line per problem in ``params.yaml``: which key, what is allowed, what was given (for :mod:`cifake.config`)."""

from __future__ import annotations

import difflib

from pydantic import BaseModel
from pydantic_core import ErrorDetails


def describe_error(error: ErrorDetails, root: type[BaseModel]) -> str:
    """The line for one pydantic validation error of the settings model ``root``."""
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    if error["type"] == "extra_forbidden":
        message = "unknown key" + suggestion(error["loc"], root)
    return f"params.yaml: '{key}': {message} (got {error.get('input')!r})"


def suggestion(loc: tuple, root: type[BaseModel]) -> str:
    """ ", did you mean 'learning_rate'?" for a misspelt key, from the keys its section allows."""
    section = root
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1)
    return f", did you mean '{close[0]}'?" if close else ""
