"""Reading a live tree into entries: the walk (with its compiled core), content hashing, what a Windows
tree leaves out."""
