# The client of bench/idle.sh: opens N keep-alive connections to 127.0.0.1:PORT, each making
# one GET / (at most WINDOW in flight at once, so that no listen queue overflows), and leaves
# them open and idle. Then it prints "idle N" and waits for a line on stdin; on it, every
# connection makes a second request on the same socket, and it prints "answered A of N" (A:
# complete "Hello, World!" responses), then closes them all.
# Usage: python3 idle_client.py PORT N
import errno, resource, selectors, socket, sys

WINDOW = 256
REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"Hello, World!"

port, total = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()


def answered(buf):
    # A complete response: its head, then Content-Length bytes of body (every peer sends one).
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(buf) >= end + 4 + length and buf[end + 4:end + 4 + length] == BODY


def run(socks, connect):
    """Drives every socket in socks through (connect,) send, receive one response; returns how
    many got a complete hello, at most WINDOW of them in flight at once."""
    ok, pending, inflight, bufs = 0, list(reversed(socks)), 0, {}

    def launch():
        nonlocal inflight
        while pending and inflight < WINDOW:
            s = pending.pop()
            inflight += 1
            bufs[s] = b""
            if connect:
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, "connect: " + errno.errorcode.get(rc, str(rc)))
                sel.register(s, selectors.EVENT_WRITE)
            else:
                s.send(REQ)
                sel.register(s, selectors.EVENT_READ)

    launch()
    while inflight:
        events = sel.select(timeout=30)
        if not events:
            raise SystemExit(f"idle_client: no progress in 30 s, {inflight} in flight")
        for key, ev in events:
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect")
                s.send(REQ)
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(4096)
            except ConnectionError:
                data = b""
            bufs[s] += data
            if data and not answered(bufs[s]):
                continue
            sel.unregister(s)
            inflight -= 1
            ok += bool(data)
        launch()
    return ok


socks = []
for _ in range(total):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    socks.append(s)
first = run(socks, True)
print(f"idle {first}", flush=True)
sys.stdin.readline()
second = run(socks, False)
print(f"answered {second} of {total}", flush=True)
for s in socks:
    s.close()
