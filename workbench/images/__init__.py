"""Image builds: API spec -> build plan -> build context, wheelhouses, base-image bootstrap.

Modules (import them directly):

- `context`: `make_context`, the planned build context written for the agent
- `plan`: `plan_build`, what goes into a context and its content hash (made once per deploy)
- `files`, `ignore`: project files and ignore patterns
- `runtime`: the predictor runtime's source and dependency pins
- `certs`: the workstation's CA bundle
- `wheelhouse`: resolve wheels on the workstation for offline builds
- `dockerfile`: the generated Dockerfile
- `archive`: deterministic tar.gz writer
- `bootstrap`: build a Python base image from Debian packages
"""
