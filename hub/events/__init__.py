"""Events and webhooks (issue 17): CloudEvents, signatures, outbound network checks, delivery.

Nothing here speaks HTTP to DaoHub's clients; the admin API's handlers (hub/handlers/admin/
webhooks.py) call the Webhooks service, and serve runs the Deliverer. docs/events.md is the
user's description."""
