"""Structured outputs: ``complete(..., response_model=Model)`` returns a validated ``Model``.

* :mod:`llmkit.structured.run`: the call through the pool, re-asks and usage;
* :mod:`llmkit.structured.models`: checks of what the call asks for;
* :mod:`llmkit.structured.backends`: how each SDK family meets instructor;
* :mod:`llmkit.structured.gemini`: Gemini's own JSON-schema mode.
"""

from llmkit.structured.models import check_response_model
from llmkit.structured.run import DEFAULT_MAX_REASKS, run_structured

__all__ = ["DEFAULT_MAX_REASKS", "check_response_model", "run_structured"]
