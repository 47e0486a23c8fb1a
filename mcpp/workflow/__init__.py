"""Defining a workflow: the spec, workflow files and their limits, parameters, templates and
step targets. Pure library code: nothing here starts a process or imports the actor layer."""
