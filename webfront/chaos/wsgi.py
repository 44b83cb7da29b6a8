"""The web app as the chaos harness serves it: the real app, with login rate limits raised
(every chaos client comes from 127.0.0.1, and the limits are not what is under test)."""

from webfront.web import create_app

app = create_app({"LOGIN_RATE_LIMIT": "100000 per minute",
                  "LOGIN_ACCOUNT_RATE_LIMIT": "100000 per minute"})
