"""The `sentinel` command line: thin argument parsing over the hub, agent, certs and client APIs."""
