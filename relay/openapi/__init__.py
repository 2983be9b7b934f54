"""OpenAPI 3.1 documents describing this project's own ETSI 014 and 020 HTTP surfaces.

The documents are written for this implementation (its routes, member names, bounds and error bodies)
and are served by each server at ``GET /openapi.json`` to authenticated callers, so clients and fuzzers
can be generated against exactly what is deployed. :func:`etsi014_document` and :func:`etsi020_document`
return fresh copies, so a caller may modify its copy freely.
"""

from __future__ import annotations

import copy
from typing import Any

from relay.openapi.common import OPENAPI_PATH
from relay.openapi.etsi014 import DOCUMENT as _ETSI014
from relay.openapi.etsi020 import DOCUMENT as _ETSI020


def etsi014_document() -> dict[str, Any]:
    return copy.deepcopy(_ETSI014)


def etsi020_document() -> dict[str, Any]:
    return copy.deepcopy(_ETSI020)


__all__ = ["OPENAPI_PATH", "etsi014_document", "etsi020_document"]
