"""Making a target equal to an image chain: plan, check, execute (writers in worker processes), apply one
diff, extract files."""
