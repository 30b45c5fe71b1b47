"""``python -m acs_email_bridge`` = the ``acs-email-bridge`` command."""

from .cli import main

raise SystemExit(main())
