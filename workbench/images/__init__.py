"""Image builds: API spec -> build context, wheelhouses, base-image bootstrap, build progress.

Modules (import them directly):

- `context`: `make_context` / `compute_hash`, the build context the agent consumes
- `plan`: what goes into a context and its content hash
- `files`, `ignore`: project files and ignore patterns
- `runtime`: the predictor runtime's source and dependency pins
- `certs`: the workstation's CA bundle
- `wheelhouse`: resolve wheels on the workstation for offline builds
- `dockerfile`: the generated Dockerfile
- `archive`: deterministic tar.gz writer
- `bootstrap`: build a Python base image from Debian packages
- `progress`: render an agent's build events
"""
