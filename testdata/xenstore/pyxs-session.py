#!/usr/bin/python3
"""A pyxs session recorded by record.py (pyxs-session.txt); needs XENSTORED_PATH."""
import os, pyxs
with pyxs.Client(unix_socket_path=os.environ["XENSTORED_PATH"]) as c:
    c.write(b"/x/y", b"1")
    assert c.read(b"/x/y") == b"1"
    c.mkdir(b"/m")
    c.set_perms(b"/m", [b"n0", b"r5"])
    assert c.get_perms(b"/m") == [b"n0", b"r5"]
    assert c.list(b"/x") == [b"y", b"z"]
    assert c.get_domain_path(3) == b"/local/domain/3"
    c.transaction()
    c.write(b"/x/z", b"3")
    assert c.commit()
    c.delete(b"/a")
