"""The list HTTP API under /api/v1: moderator accounts, lists, subscriptions, posting.

Every change a person must agree to is confirmed with a token mailed to
their address; the state lives in data/state.sqlite3 (routemail.state) and
lists in lists.toml (routemail.listedit). docs/api.md describes each call.

One module per concept: context (the request's config, state and errors),
fields (reading the JSON body), limits (failed-guess counting),
confirmations (the mailed tokens), accounts, lists, members, posting and
send; mount adds them all to the receiver's app.
"""
