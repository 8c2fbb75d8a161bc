"""Model weights on the workstation's side: a spec's `model:` resolved into a manifest (workstation
files hashed, a hub repo's revision resolved, a URL's version), and its files sent to a host's cache
over the host's link."""
