/* Tests for io/socket.c, io/accept.c, io/reader.c: real loopback sockets, real ring. */
#include <ivy/ivy.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static int listen_any(void)
{
    int fd = ivy_listen("127.0.0.1", 0, 128, 0);
    assert_true(fd >= 0);
    return fd;
}

static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    ssize_t n;
    while ((n = ivy_recv(fd, buf, sizeof buf)) > 0)
        if (ivy_sendall(fd, buf, (size_t)n) != n) break;
    ivy_close(fd);
    return NULL;
}

struct server {
    int lfd;
    int max; /* connections to serve, then stop */
};

static void *echo_server(void *arg)
{
    struct server *s = arg;
    for (int i = 0; i < s->max; i++) {
        int fd = ivy_accept(s->lfd, NULL);
        assert_true(fd >= 0);
        assert_int_equal(ivy_spawn_n(echo_conn, (void *)(intptr_t)fd), 0);
    }
    return NULL;
}

struct payload {
    int port;
    size_t len;
    int ok;
};

static void *send_half(void *arg)
{
    void **a = arg;
    ssize_t rc = ivy_sendall((int)(intptr_t)a[0], a[1], (size_t)(uintptr_t)a[2]);
    return (void *)(intptr_t)rc;
}

static void *echo_client(void *arg)
{
    struct payload *p = arg;
    int fd = ivy_connect("127.0.0.1", p->port, 5.0);
    assert_true(fd >= 0);
    unsigned char *out = malloc(p->len), *in = malloc(p->len);
    for (size_t i = 0; i < p->len; i++)
        out[i] = (unsigned char)(i * 131 + (i >> 8));
    /* Send and receive at once: a 16 MiB echo would deadlock on full buffers otherwise. */
    void *a[3] = {(void *)(intptr_t)fd, out, (void *)(uintptr_t)p->len};
    ivy_thread *sender = ivy_spawn(send_half, a);
    assert_int_equal(ivy_recv_exact(fd, in, p->len), (ssize_t)p->len);
    void *sent;
    assert_int_equal(ivy_join(sender, &sent), 0);
    assert_int_equal((intptr_t)sent, (intptr_t)p->len);
    p->ok = memcmp(in, out, p->len) == 0;
    free(out);
    free(in);
    ivy_close(fd);
    return NULL;
}

static void echo_1B_to_16MiB_is_byte_exact(void **state)
{
    static const size_t sizes[] = {1, 100, 4096, 65537, 1 << 20, 16 << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    struct server s = {listen_any(), N};
    ivy_spawn_n(echo_server, &s);
    struct payload p[N];
    for (int i = 0; i < N; i++) {
        p[i] = (struct payload){ivy_local_port(s.lfd), sizes[i], 0};
        ivy_spawn_n(echo_client, &p[i]);
    }
    assert_int_equal(ivy_run(), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(p[i].ok, 1);
    assert_int_equal(ivy_close(s.lfd), 0);
}

static int clients_ok;

static void *small_client(void *arg)
{
    int fd = ivy_connect("127.0.0.1", (int)(intptr_t)arg, 10.0);
    assert_true(fd >= 0);
    char out[64], in[64];
    memset(out, 'a' + (fd % 26), sizeof out);
    assert_int_equal(ivy_sendall(fd, out, sizeof out), 64);
    assert_int_equal(ivy_recv_exact(fd, in, sizeof in), 64);
    clients_ok += memcmp(in, out, 64) == 0;
    ivy_close(fd);
    return NULL;
}

static void thousand_concurrent_clients(void **state)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    clients_ok = 0;
    struct server s = {ivy_listen("127.0.0.1", 0, 4096, 0), 1000};
    assert_true(s.lfd >= 0);
    ivy_spawn_n(echo_server, &s);
    for (int i = 0; i < 1000; i++)
        ivy_spawn_n(small_client, (void *)(intptr_t)ivy_local_port(s.lfd));
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(clients_ok, 1000);
    ivy_close(s.lfd);
}

struct silent {
    int lfd;
    int rc;
    uint64_t took;
    int held;
};

static void *accept_and_hold(void *arg)
{
    struct silent *s = arg;
    s->held = ivy_accept(s->lfd, NULL);
    assert_true(s->held >= 0);
    return NULL;
}

static void *recv_with_deadline(void *arg)
{
    struct silent *s = arg;
    int fd = ivy_connect("127.0.0.1", ivy_local_port(s->lfd), 5.0);
    assert_true(fd >= 0);
    char buf[16];
    struct ivy_timeout to;
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_timeout_begin(&to, 0.05), 0);
    s->rc = (int)ivy_recv(fd, buf, sizeof buf);
    s->took = ivy_now_ns() - t0;
    assert_int_equal(ivy_timeout_end(&to), -ETIMEDOUT);
    ivy_close(fd);
    return NULL;
}

static void deadline_on_recv_from_silent_peer(void **state)
{
    struct silent s = {.lfd = listen_any()};
    ivy_spawn_n(accept_and_hold, &s);
    ivy_spawn_n(recv_with_deadline, &s);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(s.rc, -ETIMEDOUT);
    assert_true(s.took >= 50000000 && s.took < 1000000000);
    close(s.held);
    ivy_close(s.lfd);
}

static void *recv_forever(void *arg)
{
    struct silent *s = arg;
    int fd = ivy_connect("127.0.0.1", ivy_local_port(s->lfd), 5.0);
    char buf[16];
    s->rc = (int)ivy_recv(fd, buf, sizeof buf);
    ivy_close(fd);
    return NULL;
}

static void *kill_later(void *arg)
{
    ivy_sleep(0.02);
    ivy_kill(arg);
    return NULL;
}

static void kill_of_thread_blocked_in_recv(void **state)
{
    struct silent s = {.lfd = listen_any()};
    ivy_spawn_n(accept_and_hold, &s);
    ivy_thread *t = ivy_spawn(recv_forever, &s);
    ivy_spawn_n(kill_later, t);
    uint64_t t0 = ivy_now_ns();
    assert_int_equal(ivy_run(), 0);
    assert_true(ivy_now_ns() - t0 < 1000000000);
    assert_int_equal(s.rc, -ECANCELED);
    assert_int_equal(ivy_join(t, NULL), 0);
    close(s.held);
    ivy_close(s.lfd);
}

struct shut {
    int fd;
    ssize_t rc;
};

static void *recv_until_shutdown(void *arg)
{
    struct shut *sh = arg;
    char buf[16];
    sh->rc = ivy_recv(sh->fd, buf, sizeof buf);
    return NULL;
}

static void *shutdown_later(void *arg)
{
    ivy_sleep(0.02);
    assert_int_equal(ivy_shutdown(((struct shut *)arg)->fd, SHUT_RDWR), 0);
    return NULL;
}

static void *connect_and_block(void *arg)
{
    struct silent *s = arg;
    struct shut sh = {ivy_connect("127.0.0.1", ivy_local_port(s->lfd), 5.0), 1};
    ivy_thread *r = ivy_spawn(recv_until_shutdown, &sh);
    ivy_spawn_n(shutdown_later, &sh);
    assert_int_equal(ivy_join(r, NULL), 0);
    s->rc = (int)sh.rc;
    ivy_close(sh.fd);
    return NULL;
}

static void shutdown_wakes_a_blocked_recv(void **state)
{
    struct silent s = {.lfd = listen_any(), .rc = 1};
    ivy_spawn_n(accept_and_hold, &s);
    ivy_spawn_n(connect_and_block, &s);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(s.rc, 0); /* end of stream, not a hang */
    close(s.held);
    ivy_close(s.lfd);
}

static void *accept_then_reset(void *arg)
{
    struct silent *s = arg;
    int fd = ivy_accept(s->lfd, NULL);
    char buf[4096];
    assert_true(ivy_recv(fd, buf, sizeof buf) > 0); /* the sender is under way */
    struct linger lg = {1, 0};                      /* close with RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ivy_close(fd);
    return NULL;
}

static void *sendall_big(void *arg)
{
    struct silent *s = arg;
    int fd = ivy_connect("127.0.0.1", ivy_local_port(s->lfd), 5.0);
    size_t len = 64 << 20;
    char *big = calloc(1, len);
    s->rc = (int)ivy_sendall(fd, big, len);
    free(big);
    ivy_close(fd);
    return NULL;
}

static void peer_reset_mid_sendall(void **state)
{
    struct silent s = {.lfd = listen_any()};
    ivy_spawn_n(accept_then_reset, &s);
    ivy_spawn_n(sendall_big, &s);
    assert_int_equal(ivy_run(), 0);
    assert_true(s.rc == -ECONNRESET || s.rc == -EPIPE);
    ivy_close(s.lfd);
}

struct emfile {
    int lfd;
    int accepted[64];
    int naccepted;
    int seen_at_limit, seen_after_close;
    long cpu_us_at_limit;
};

static long cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1000000L +
           ru.ru_stime.tv_usec;
}

static void *emfile_acceptor(void *arg)
{
    struct emfile *e = arg;
    while (e->naccepted < 20) {
        int fd = ivy_accept(e->lfd, NULL);
        if (fd < 0) return ivy_err_ptr(fd);
        e->accepted[e->naccepted++] = fd;
    }
    return NULL;
}

static void *emfile_monitor(void *arg)
{
    struct emfile *e = arg;
    ivy_sleep(0.1);
    long c0 = cpu_us();
    ivy_sleep(0.4); /* accept is out of descriptors all this time */
    e->cpu_us_at_limit = cpu_us() - c0;
    e->seen_at_limit = e->naccepted;
    for (int i = 0; i < 5; i++)
        ivy_close(e->accepted[i]); /* room for five more */
    ivy_sleep(1.2);                /* longer than the back-off */
    e->seen_after_close = e->naccepted;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max > 4096 ? 4096 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    return NULL;
}

static void emfile_backs_off_without_spinning(void **state)
{
    struct emfile e = {.lfd = ivy_listen("127.0.0.1", 0, 64, 0)};
    int port = ivy_local_port(e.lfd);
    int clients[20];
    for (int i = 0; i < 20; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(clients[i], (struct sockaddr *)&a, sizeof a), 0);
    }
    /* Leave room for exactly five more descriptors. */
    int probe = dup(0), high = probe;
    close(probe);
    for (int fd = probe + 1; fd < probe + 64; fd++)
        if (fcntl(fd, F_GETFD) != -1) high = fd;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = (rlim_t)high + 1 + 5;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fillers[128], nfill = 0; /* plug every hole below the limit, then free five */
    while (nfill < 128 && (fillers[nfill] = dup(0)) >= 0)
        nfill++;
    assert_int_equal(errno, EMFILE);
    for (int i = 0; i < 5; i++)
        close(fillers[--nfill]);

    ivy_spawn_n(emfile_acceptor, &e);
    ivy_spawn_n(emfile_monitor, &e);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(e.seen_at_limit, 5);
    assert_int_equal(e.seen_after_close, 10);
    assert_int_equal(e.naccepted, 20);
    assert_true(e.cpu_us_at_limit < 100000); /* 0.4 s out of descriptors: no spinning */
    for (int i = 5; i < 20; i++)
        close(e.accepted[i]);
    for (int i = 0; i < 20; i++)
        close(clients[i]);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    ivy_close(e.lfd);
}

struct lines {
    int lfd;
    int n;
    char got[8][64];
    ssize_t lens[8];
    ssize_t too_long;
};

static void *line_reader(void *arg)
{
    struct lines *l = arg;
    int fd = ivy_accept(l->lfd, NULL);
    ivy_reader *r = ivy_reader_new(fd, 32);
    const char *line;
    ssize_t n;
    while ((n = ivy_readline(r, &line)) > 0 && l->n < 8) {
        l->lens[l->n] = n;
        memcpy(l->got[l->n++], line, (size_t)n);
        if (l->n == 4) break;
    }
    l->too_long = ivy_readline(r, &line);
    ivy_reader_free(r);
    ivy_close(fd);
    return NULL;
}

static void *line_writer(void *arg)
{
    struct lines *l = arg;
    int fd = ivy_connect("127.0.0.1", ivy_local_port(l->lfd), 5.0);
    /* Pipelined: several lines per send, one line split across sends. */
    ivy_sendall(fd, "GET /a\nGET /bb\nGE", 17);
    ivy_sleep(0.01);
    ivy_sendall(fd, "T /ccc\n\n", 8);
    ivy_sendall(fd, "this line is far longer than thirty-two bytes\n", 46);
    ivy_sleep(0.05);
    ivy_close(fd);
    return NULL;
}

static void readline_over_pipelined_lines(void **state)
{
    struct lines l = {.lfd = listen_any()};
    ivy_spawn_n(line_reader, &l);
    ivy_spawn_n(line_writer, &l);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.lens[0], 7);
    assert_memory_equal(l.got[0], "GET /a\n", 7);
    assert_int_equal(l.lens[1], 8);
    assert_memory_equal(l.got[1], "GET /bb\n", 8);
    assert_int_equal(l.lens[2], 9);
    assert_memory_equal(l.got[2], "GET /ccc\n", 9);
    assert_int_equal(l.lens[3], 1);
    assert_int_equal(l.too_long, -EMSGSIZE);
    ivy_close(l.lfd);
}

static void *refused(void *arg)
{
    int lfd = listen_any();
    int port = ivy_local_port(lfd);
    ivy_close(lfd);
    *(int *)arg = ivy_connect("127.0.0.1", port, 1.0);
    return NULL;
}

static void connect_refused_and_misuse(void **state)
{
    int rc = 0;
    ivy_spawn_n(refused, &rc);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(rc, -ECONNREFUSED);
    char b[4];
    assert_int_equal(ivy_recv(0, b, 4), -EPERM); /* outside a green thread */
    assert_int_equal(ivy_listen("127.0.0.1", 70000, 1, 0), -EINVAL);
    assert_int_equal(ivy_listen("256.1.1.1", 0, 1, 0), -ENOENT);
}

static void *file_io(void *arg)
{
    char path[] = "/tmp/ivy-test-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    assert_int_equal(ivy_pwrite(fd, "hello ring", 10, 100), 10);
    char buf[16] = {0};
    assert_int_equal(ivy_pread(fd, buf, 10, 100), 10);
    assert_memory_equal(buf, "hello ring", 10);
    assert_int_equal(ivy_pread(fd, buf, 16, 110), 0); /* end of file */
    assert_int_equal(ivy_pread(fd, buf, 16, -1), -EINVAL);
    assert_int_equal(ivy_close(fd), 0);
    *(int *)arg = 1;
    return NULL;
}

static void file_read_write_through_ring(void **state)
{
    int done = 0;
    ivy_spawn_n(file_io, &done);
    assert_int_equal(ivy_run(), 0);
    assert_int_equal(done, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_1B_to_16MiB_is_byte_exact),
        cmocka_unit_test(thousand_concurrent_clients),
        cmocka_unit_test(deadline_on_recv_from_silent_peer),
        cmocka_unit_test(kill_of_thread_blocked_in_recv),
        cmocka_unit_test(shutdown_wakes_a_blocked_recv),
        cmocka_unit_test(peer_reset_mid_sendall),
        cmocka_unit_test(emfile_backs_off_without_spinning),
        cmocka_unit_test(readline_over_pipelined_lines),
        cmocka_unit_test(connect_refused_and_misuse),
        cmocka_unit_test(file_read_write_through_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
