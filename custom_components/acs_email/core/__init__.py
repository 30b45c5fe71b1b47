"""HA-free engine of acs_email: message model, ACS transport, rate limiting, durable outbox, dispatcher."""
