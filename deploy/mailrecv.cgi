#!/usr/bin/env python3
"""The receiver as a CGI script, for shared hosting: the same Flask app as under gunicorn.

Install: copy this file into the host's cgi-bin, make it executable, and set
the first line to the project's interpreter (for example
#!/home/you/routemail/.venv/bin/python). The web server must pass:

  ROUTEMAIL_HOME     the project checkout (added to sys.path; default: the
                     folder above this script's real location)
  ROUTEMAIL_CONFIG   path of lists.toml
  ROUTEMAIL_DATA     the data directory (the spool is ROUTEMAIL_DATA/maillist)
  MAILRECV_SECRET    the shared secret (or receiver.secret_file in lists.toml)

With Apache: `SetEnv ROUTEMAIL_HOME /home/you/routemail` etc. in .htaccess.
The receiver's URL is then https://host/cgi-bin/mailrecv.cgi/mailrecv.
"""

import json
import os
import sys
import traceback


def _unavailable(reason):
    # Answer like the receiver does (a JSON 503 the sender retries), and leave
    # the traceback for the web server's error log, never for the client.
    traceback.print_exc(file=sys.stderr)
    body = json.dumps({"error": reason}).encode("utf-8")
    out = sys.stdout.buffer
    out.write(b"Status: 503 Service Unavailable\r\n")
    out.write(b"Content-Type: application/json\r\n")
    out.write(b"Content-Length: %d\r\n\r\n" % len(body))
    out.write(body)
    out.flush()


def main():
    home = os.environ.get("ROUTEMAIL_HOME") or os.path.dirname(
        os.path.dirname(os.path.realpath(__file__))
    )
    if home not in sys.path:
        sys.path.insert(0, home)
    try:
        from wsgiref.handlers import CGIHandler

        from mailrecv.wsgi import app
    except Exception:
        _unavailable(
            "receiver cannot start: check ROUTEMAIL_HOME and the interpreter on the first line"
        )
        return
    CGIHandler().run(app)


if __name__ == "__main__":
    main()
