# Slowloris: N connections, each trickling a request head one byte per PERIOD seconds and never
# finishing it, for DURATION seconds. Prints how many the server had closed by then (and how
# many it answered, with what). Usage: slow_client.py PORT N DURATION PERIOD
import resource, selectors, socket, sys, time

port, n, duration, period = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 4000
sel = selectors.DefaultSelector()
conns = {}
opened = 0
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    conns[s.fileno()] = [s, 0, b""]
    sel.register(s, selectors.EVENT_READ)
    opened += 1
start = time.monotonic()
closed = answered_408 = other = 0
next_tick = start
while time.monotonic() - start < duration:
    now = time.monotonic()
    if now >= next_tick:
        for fd, c in list(conns.items()):
            if c[1] < len(head):
                try:
                    c[0].send(head[c[1]:c[1] + 1])
                    c[1] += 1
                except (BlockingIOError, OSError):
                    pass
        next_tick += period
    for key, _ in sel.select(timeout=max(0.0, min(0.05, next_tick - time.monotonic()))):
        c = conns.get(key.fd)
        if not c:
            continue
        try:
            d = key.fileobj.recv(4096)
        except OSError:
            d = b""
        if d:
            c[2] += d
            continue
        if c[2].startswith(b"HTTP/1.1 408"):
            answered_408 += 1
        elif c[2]:
            other += 1
        closed += 1
        sel.unregister(key.fileobj)
        key.fileobj.close()
        del conns[key.fd]
print(f"opened {opened} closed {closed} answered_408 {answered_408} other {other} open {len(conns)}")
