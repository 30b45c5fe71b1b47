"""Standalone acs_email service: CLI, ACS emulator, MQTT and SMTP sources."""
