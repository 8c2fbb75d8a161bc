"""The app's screens: fleet, APIs, one API, logs, and the modal forms."""
