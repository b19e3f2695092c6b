"""The service layer: what armor-ab does, under every door that asks for it.

The FastAPI routes, the ASGI fast paths, the beacon and the CLI call these functions; they hold
the rules (who may do what, what is valid, what is stored, what a visitor sees), and the doors
only parse their input and render the answer. Errors are ``ServiceError``s, which carry the HTTP
status and stable code the API answers with (``api/errors.py`` renders them; the CLI prints them).

* ``state``: the live state of a server (the database process, caches of small tables, metrics);
* ``auth``: API keys: the one bearer-token parser and scope check;
* ``assignment``: a visitor's variant, logging the first exposure;
* ``ingest``: event batches, validated and committed; ``event_import``: event files, the same rules;
* ``catalog_import``: a manufacturer's catalog file, checked whole, then its photos and items stored;
* ``serving``: the content a visitor's variant shows, generated on demand when the variant asks;
* ``review``: approving and rejecting generated content (never a page that fails a blocking guardrail);
* ``health``: an experiment's live health (SRM, traffic, fallbacks, content verdicts, lag, bots, guardrail
  metrics) and the monitor that pauses a critical one; ``pause``: pausing and resuming its ARMOR arms.
"""
