"""The Generate use case: where routing, prompts, retrieval and billing meet.

A handler turns a request into one validated ``GenerationCall`` (``call.py``; rules in
``validation.py``) and hands it to ``GenerationService`` (``service.py``), which owns the
sequence configure (``presets.py``: bot + template) → ground (``grounding.py``) → reserve
→ route → settle or void (``metering.py``) → record. Nothing here imports grpc or
generated code: results and errors are domain values the handler translates.
"""
