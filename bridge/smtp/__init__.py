"""SMTP relay for legacy devices: printers, scanners, UPS cards keep SMTP AUTH on the LAN; ACS does the rest."""
