"""HTTP clients for workbench's services, on one core (workbench.clients.core):
the control API (workbench.clients.control) and agents (workbench.clients.agent). The public
client for deployed APIs, through the router, is workbench.client."""
