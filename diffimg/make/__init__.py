"""Making images: full and differential images from a tree, tar streams, and conversion from partclone
images."""
