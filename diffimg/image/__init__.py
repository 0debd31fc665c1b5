"""Image files: the format, chains of layers (local or on a web server), the containers that hold content,
verify, and the read-only mount."""
