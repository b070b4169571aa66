"""routemail: a mailing-list router for mail that arrives through Amazon SES."""

__version__ = "0.1.0"
