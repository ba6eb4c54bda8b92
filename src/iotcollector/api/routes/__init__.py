"""The ``/api`` routes, one module per resource."""
