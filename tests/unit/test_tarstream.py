"""The tar stream a squashfs container is fed (make/tarstream.py), read back by Python's
tarfile."""


def test_the_tar_stream_is_read_back_by_an_independent_reader():
    """tarstream's headers, read by Python's tarfile: a path of any length or bytes (pax
    'path' past ustar's 99 bytes, pax record lengths at their digit boundaries) and a size past
    ustar's eleven octal digits (pax 'size') come back exactly, each content where it belongs."""
    import io
    import tarfile

    from treebuild import BAD_UTF8

    from diffimg.make import tarstream
    paths = [b"a", b"x" * 99, b"y" * 100, b"line\nbreak", BAD_UTF8, b"a -> b",
             b"d" * 200 + b"/" + b"e" * 255 + b"/f"] + [b"z" * n for n in range(980, 1000)]
    stream = io.BytesIO()
    for i, path in enumerate(paths):
        data = b"%d" % i * (i + 1)
        stream.write(tarstream.file_header(path, len(data)) + data + tarstream.padding(len(data)))
    stream.write(tarstream.file_header(b"big", 9 << 30))       # header only: not read on
    stream.write(bytes(tarstream.BLOCK))
    stream.seek(0)
    with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
        for i, member in enumerate(tar):
            assert member.name.encode("utf-8", "surrogateescape") == (paths + [b"big"])[i]
            if i == len(paths):
                assert member.size == 9 << 30
                break
            assert member.isfile() and tar.extractfile(member).read() == b"%d" % i * (i + 1)
    assert i == len(paths)
