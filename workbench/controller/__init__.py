"""The controller: desired state, fleet, scheduler, reconciler, autoscaler, control API."""
