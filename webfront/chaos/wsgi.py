"""The web app as the chaos harness serves it: the real app, with login rate limits raised
(every chaos client comes from 127.0.0.1, and the limits are not what is under test) and a
cheap scrypt setting (on 2 cores the default costs ~0.4 s a hash, so a few sign-ups in flight
would stall every other request and show up as write gaps that have nothing to do with
replication)."""

from webfront.web import create_app

app = create_app({"LOGIN_RATE_LIMIT": "100000 per minute",
                  "LOGIN_ACCOUNT_RATE_LIMIT": "100000 per minute",
                  "PASSWORD_HASH_METHOD": "scrypt:1024:8:1"})
