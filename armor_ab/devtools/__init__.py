"""Tools for trying armor-ab out, not for production: the one-command demo (``make demo``,
``python -m armor_ab.devtools.demo``) and the traffic simulator (``armor-ab simulate``)."""
