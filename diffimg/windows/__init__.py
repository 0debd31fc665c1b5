"""NTFS's values as diffimg reads and writes them: attributes, security descriptors, reparse points, short
names (ntfs) and named data streams (streams)."""
