"""`python -m workbench.agent serve|init [--home DIR] [--port PORT]`
(serve also: `--direct --bind ADDR [--tls-cert FILE --tls-key FILE]`)."""

from __future__ import annotations

import argparse
import sys

from workbench.agent.home import AgentHome, resolve_home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.agent")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the agent"), ("init", "write config.json and exit")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--home", help="agent home (default: $WORKBENCH_HOME/agent or user data)")
        p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: config, 8770)")
        if name == "serve":
            p.add_argument("--bind", "--host", dest="host", default="127.0.0.1", metavar="ADDR",
                           help="address to listen on (default 127.0.0.1; another one needs --direct)")
            p.add_argument(
                "--direct",
                action="store_true",
                help="direct mode (LAN/VPN): allow --bind other than 127.0.0.1 (token still required)",
            )
            p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
            p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    home = AgentHome(resolve_home(args.home))
    if args.command == "init":
        home.load_or_create_config(args.port)
        print(home.config_path)
        return 0
    from workbench.agent.server import serve

    serve(home, args.port, host=args.host, direct=args.direct, tls_cert=args.tls_cert,
          tls_key=args.tls_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
