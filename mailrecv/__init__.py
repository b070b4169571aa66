"""mailrecv: the HTTP receiver. Thin: it writes to the spool and calls into routemail."""
