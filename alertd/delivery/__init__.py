"""From rendered messages to the user's phone: routing, the durable outbox worker, senders."""
