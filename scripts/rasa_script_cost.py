#!/usr/bin/env python3
"""Drives the Rasa layout's scripts straight over RESP (no client library),
for scripts/rasa_script_cost.sh, which counts the server's instructions.

    rasa_script_cost.py REV N [cycle|head]

REV: a git revision of this repository, or a directory holding `rasa/` and
`request.lua` (as ticketlock/src/redis does). The scripts are assembled as
ticketlock/src/redis/rasa/scripts.rs does (the PUBLISH prelude, common.lua,
ours.lua, splice.lua when there is one, request.lua, the operation).

cycle: N uncontended cycles, each an issue on a new conversation (granted at
once) and its release, as `bench --layout rasa --workload throughput` does.
head: N calls of the scripts' shared head followed by `return 1`.
With NOLOAD=1 the scripts are called by hash only (loaded by an earlier run).
"""
import hashlib
import os
import socket
import subprocess
import sys
import time

PORT = int(os.environ.get('PORT', '16734'))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def enc(*args):
    out = [b'*%d\r\n' % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(a), a))
    return b''.join(out)


class Conn:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', PORT))
        self.f = self.s.makefile('rb')

    def call(self, *args):
        self.s.sendall(enc(*args))
        return self.read()

    def read(self):
        line = self.f.readline()
        t, r = line[:1], line[1:-2]
        if t == b'+':
            return r.decode()
        if t == b'-':
            raise RuntimeError(r.decode())
        if t == b':':
            return int(r)
        if t == b'$':
            n = int(r)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b'*':
            n = int(r)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError('bad reply %r' % line)


def source(rev, path):
    if os.path.isdir(rev):
        with open(os.path.join(rev, path)) as f:
            return f.read()
    return subprocess.run(['git', '-C', REPO, 'show', '%s:ticketlock/src/redis/%s' % (rev, path)],
                          capture_output=True, text=True, check=True).stdout


def script(rev, op):
    parts = ["local PUBLISH = 'PUBLISH'\n", source(rev, 'rasa/common.lua'), '\n',
             source(rev, 'rasa/ours.lua'), '\n']
    try:
        parts += [source(rev, 'rasa/splice.lua'), '\n']
    except (subprocess.CalledProcessError, FileNotFoundError):
        pass
    parts += ['local REQUEST = KEYS[2]\n', source(rev, 'request.lua'), '\n']
    parts.append('return 1' if op is None else source(rev, 'rasa/' + op))
    return ''.join(parts)


def sha_of(c, text):
    if os.environ.get('NOLOAD'):
        return hashlib.sha1(text.encode()).hexdigest()
    return c.call('SCRIPT', 'LOAD', text)


def main():
    rev, n = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else 'cycle'
    c = Conn()
    if mode == 'head':
        sha = sha_of(c, script(rev, None))
        for _ in range(n):
            assert c.call('EVALSHA', sha, 3, 'k', 'r', 'o', '"c"') == 1
        return
    issue = sha_of(c, script(rev, 'issue.lua'))
    release = sha_of(c, script(rev, 'release.lua'))
    # The same length of names whatever REV is (the cost follows it).
    tag = 'c%d' % int(time.time() * 1000)
    for i in range(n):
        cid = '%s-%d' % (tag, i)
        key = 'rasa:lock:' + cid
        ours = '{%s}:%s:ours' % (key, key)
        r = c.call('EVALSHA', issue, 3, key, '{%s}:%s:rq%d' % (key, key, i), ours,
                   '"%s"' % cid, 10000000, 1000, 30000)
        assert r[2] == 0, r
        rel = '{%s}:%s:rl:%d:%d' % (key, key, r[1], r[0])
        r = c.call('EVALSHA', release, 3, key, rel, ours, '"%s"' % cid, r[0], r[1], 30000)
        assert r[0] == 1, r


if __name__ == '__main__':
    main()
