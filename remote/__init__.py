"""SSH hosts: verified connections, preflight, agent install, tunnels (see issue: remote GPU boxes)."""
