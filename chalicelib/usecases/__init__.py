"""The use cases, one module per entry point of app.py:

- ``reconcile``: the scheduled, level-triggered convergence of every node;
- ``heartbeat``: the scheduled node heartbeat;
- ``audit``: an audit webhook batch (bindings to our nodes, pod deletes);
- ``machine_event``: a cloud event about one machine (the fast status path);
- ``admission_review``: an admission review (refusals, defaults, binding fast path).

Each gathers the pods and machines it needs, asks ``plan`` what to do and lets
the Converger do it; ``world`` holds what they all talk to. The scheduled
reconcile is the source of truth; audit and cloud events only make it fast
(DESIGN.md, invariant 1). Nothing is imported here: an entry point loads only
its own module (cold start).
"""
