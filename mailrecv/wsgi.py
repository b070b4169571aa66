"""The WSGI entry point for gunicorn and the CGI wrapper: `mailrecv.wsgi:app`."""

from mailrecv.app import create_app

app = create_app()
