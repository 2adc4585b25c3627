# Usage: python3 hello_green.py gevent|eventlet PORT (bench/http.sh and bench/idle.sh).
# The hello server on gevent or eventlet: a green thread per connection answering every
# request head in what it receives (keep-alive, pipelining), Date formatted once per second.
import socket, sys, time
from email.utils import formatdate
flavour, port = sys.argv[1], int(sys.argv[2])
cache = [0, b""]
def response():
    now = int(time.time())
    if cache[0] != now:
        cache[0] = now
        cache[1] = (b"HTTP/1.1 200 OK\r\nServer: " + flavour.encode() + b"\r\nDate: " +
                    formatdate(now, usegmt=True).encode() +
                    b"\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
    return cache[1]
def handle(sock, addr=None):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    carry = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        buf = carry + data
        n = buf.count(b"\r\n\r\n")
        if n:
            carry = buf[buf.rfind(b"\r\n\r\n") + 4:]
            sock.sendall(response() * n)
        else:
            carry = buf
    sock.close()
if flavour == "gevent":
    from gevent.server import StreamServer
    StreamServer(("127.0.0.1", port), handle, backlog=4096).serve_forever()
else:
    import eventlet
    srv = eventlet.listen(("127.0.0.1", port), backlog=4096)
    pool = eventlet.GreenPool(100000)
    while True:
        sock, addr = srv.accept()
        pool.spawn_n(handle, sock, addr)
