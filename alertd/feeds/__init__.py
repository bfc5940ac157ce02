"""Live exchange feeds: REST bootstrap and reconcile, websocket streams, reconnects."""
