"""The contract wing: everything that crosses a process boundary.

- :mod:`~workbench.wire.errors`: the one error family and its JSON body (both ways);
- :mod:`~workbench.wire.replica`: what a replica starts with (the predictor runtime reads it);
- :mod:`~workbench.wire.agent`: the agent's API bodies;
- :mod:`~workbench.wire.control`: the control API's bodies (controller, CLI, TUI);
- :mod:`~workbench.wire.handlers`: FastAPI handlers answering errors in the wire's shape.

Imported inside replicas and on every box, so it depends on pydantic (and FastAPI for the
handlers) only.
"""
