/*
 * Tests for io/green/ (green libc) in its link-time form: this program links the interposers,
 * so its own plain libc calls are greened on green threads and libc's everywhere else.
 */
#include <ivy/ivy.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MS 1000000ll

static int sp[2];
static int ticks;
static ivy_thread *tk;

static void *ticker(void *arg)
{
    while (ivy_sleep(0.005) == 0)
        ticks++;
    return NULL;
}

static int setup(void **state)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    ticks = 0;
    return 0;
}

static int teardown(void **state)
{
    close(sp[0]);
    close(sp[1]);
    assert_int_equal(ivy_offload_shutdown(), 0);
    assert_int_equal(ivy_hub_free(), 0);
    return 0;
}

static int64_t now_ns(void)
{
    return (int64_t)ivy_now_ns();
}

/* Runs fn in a green thread beside the ticker; fn's int result. */
static int run_green(void *(*fn)(void *), void *arg)
{
    ivy_thread *t = ivy_spawn(fn, arg);
    tk = ivy_spawn(ticker, NULL);
    assert_non_null(t);
    assert_int_equal(ivy_run(), 0);
    void *v = NULL;
    int err = ivy_join(t, &v); /* fn's negative int result reads as an error pointer */
    ivy_join(tk, NULL);
    return err ? err : (int)(intptr_t)v;
}

static void stop_ticker(void)
{
    ivy_kill(tk);
}

static void *write_later(void *arg)
{
    ivy_sleep(0.03);
    assert_int_equal(write(sp[1], "hello", 5), 5);
    return NULL;
}

static void *read_blocking(void *arg)
{
    ivy_spawn_n(write_later, NULL);
    char buf[16];
    int64_t t0 = now_ns();
    ssize_t n = read(sp[0], buf, sizeof buf);
    assert_true(now_ns() - t0 >= 25 * MS);
    assert_true(ticks >= 2); /* only this thread waited */
    assert_memory_equal(buf, "hello", 5);
    stop_ticker();
    return (void *)(intptr_t)n;
}

static void read_suspends_only_its_green_thread(void **state)
{
    assert_int_equal(run_green(read_blocking, NULL), 5);
}

static void *nonblocking_reads(void *arg)
{
    char c;
    int fl = fcntl(sp[0], F_GETFL);
    assert_int_equal(fcntl(sp[0], F_SETFL, fl | O_NONBLOCK), 0);
    errno = 0;
    assert_int_equal(read(sp[0], &c, 1), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(fcntl(sp[0], F_SETFL, fl), 0);
    int on = 1;
    assert_int_equal(ioctl(sp[0], FIONBIO, &on), 0);
    assert_int_equal(recv(sp[0], &c, 1, 0), -1);
    assert_int_equal(errno, EAGAIN);
    on = 0;
    assert_int_equal(ioctl(sp[0], FIONBIO, &on), 0);
    assert_int_equal(recv(sp[0], &c, 1, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    int s2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s2), 0);
    assert_int_equal(recvfrom(s2[0], &c, 1, 0, NULL, NULL), -1);
    assert_int_equal(errno, EAGAIN);
    close(s2[0]);
    close(s2[1]);
    stop_ticker();
    return NULL;
}

static void descriptors_made_nonblocking_still_get_eagain(void **state)
{
    assert_int_equal(run_green(nonblocking_reads, NULL), 0);
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen);

static void *fortified_calls(void *arg)
{
    struct pollfd p = {.fd = sp[0], .events = POLLIN};
    assert_int_equal(__poll_chk(&p, 1, 30, sizeof p), 0); /* a green 30 ms wait */
    assert_true(ticks >= 3);
    ivy_spawn_n(write_later, NULL);
    char buf[8];
    assert_int_equal(__read_chk(sp[0], buf, 5, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    stop_ticker();
    return NULL;
}

static void fortified_entry_points_are_green_too(void **state)
{
    assert_int_equal(run_green(fortified_calls, NULL), 0);
}

static void *rcvtimeo_read(void *arg)
{
    struct timeval tv = {0, 50000};
    assert_int_equal(setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    char c;
    int64_t t0 = now_ns();
    assert_int_equal(read(sp[0], &c, 1), -1);
    assert_int_equal(errno, EAGAIN);
    int64_t waited = now_ns() - t0;
    assert_true(waited >= 45 * MS && waited < 1000 * MS);
    assert_true(ticks >= 3);
    stop_ticker();
    return NULL;
}

static void socket_receive_timeouts_still_expire(void **state)
{
    assert_int_equal(run_green(rcvtimeo_read, NULL), 0);
}

static int victim_errno, sleeper_rc;
static struct timespec sleeper_rem;
static void *read_forever(void *arg)
{
    char c;
    assert_int_equal(read(sp[0], &c, 1), -1);
    victim_errno = errno;
    return NULL;
}

static void *sleep_long(void *arg)
{
    struct timespec ts = {10, 0};
    sleeper_rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &sleeper_rem);
    return NULL;
}

static void *kill_reader(void *arg)
{
    ivy_thread *v = ivy_spawn(read_forever, NULL), *z = ivy_spawn(sleep_long, NULL);
    ivy_sleep(0.01);
    ivy_kill(v);
    ivy_kill(z);
    ivy_join(v, NULL);
    ivy_join(z, NULL);
    assert_int_equal(sleeper_rc, ECANCELED); /* clock_nanosleep returns its error */
    assert_true(sleeper_rem.tv_sec >= 9);    /* and what it did not sleep */
    struct ivy_timeout to;
    assert_int_equal(ivy_timeout_begin(&to, 0.02), 0);
    struct pollfd p = {.fd = sp[0], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), -1);
    int scoped = errno;
    assert_int_equal(ivy_timeout_end(&to), -ETIMEDOUT);
    assert_int_equal(scoped, ETIMEDOUT);
    stop_ticker();
    return NULL;
}

static void kill_gives_ecanceled_and_an_expired_scope_etimedout(void **state)
{
    victim_errno = 0;
    assert_int_equal(run_green(kill_reader, NULL), 0);
    assert_int_equal(victim_errno, ECANCELED);
}

static void *drain(void *arg)
{
    size_t total = 0, want = (size_t)(intptr_t)arg;
    char buf[65536];
    ssize_t n;
    while (total < want && (n = recv(sp[1], buf, sizeof buf, 0)) > 0)
        total += (size_t)n;
    return (void *)(intptr_t)total;
}

static void *write_everything(void *arg)
{
    enum { LEN = 4 << 20 };
    char *big = calloc(1, LEN);
    ivy_thread *d = ivy_spawn(drain, (void *)(intptr_t)(LEN + 1000));
    struct iovec v[2] = {{big, LEN / 2}, {big + LEN / 2, LEN / 2}};
    assert_int_equal(writev(sp[0], v, 2), LEN); /* blocking: all of it, as libc */
    assert_int_equal(write(sp[0], big, 1000), 1000);
    void *got;
    assert_int_equal(ivy_join(d, &got), 0);
    assert_int_equal((intptr_t)got, LEN + 1000);
    free(big);
    stop_ticker();
    return NULL;
}

static void blocking_writes_send_everything(void **state)
{
    assert_int_equal(run_green(write_everything, NULL), 0);
}

static void *pipe_writer(void *arg)
{
    ivy_sleep(0.03);
    assert_int_equal(write((int)(intptr_t)arg, "pipe", 4), 4);
    return NULL;
}

static void *pipe_read(void *arg)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    ivy_spawn_n(pipe_writer, (void *)(intptr_t)p[1]);
    char buf[8];
    assert_int_equal(read(p[0], buf, sizeof buf), 4);
    assert_true(ticks >= 2);
    assert_memory_equal(buf, "pipe", 4);
    close(p[0]);
    close(p[1]);
    stop_ticker();
    return NULL;
}

static void pipes_are_read_through_the_ring(void **state)
{
    assert_int_equal(run_green(pipe_read, NULL), 0);
}

static int lport;
static void *acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(send(fd, "hi", 2, 0), 2);
    close(fd);
    return NULL;
}

static void *accept_timeout(void *arg)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    struct timeval tv = {0, 40000};
    assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    int64_t t0 = now_ns();
    assert_int_equal(accept(lfd, NULL, NULL), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(now_ns() - t0 >= 35 * MS);
    assert_true(ticks >= 3);
    int fl = fcntl(lfd, F_GETFL);
    assert_int_equal(fcntl(lfd, F_SETFL, fl | O_NONBLOCK), 0);
    assert_int_equal(accept4(lfd, NULL, NULL, 0), -1); /* non-blocking: at once */
    assert_int_equal(errno, EAGAIN);
    close(lfd);
    stop_ticker();
    return NULL;
}

static void accept_honours_its_timeout_and_nonblocking_listeners(void **state)
{
    assert_int_equal(run_green(accept_timeout, NULL), 0);
}

static void *connect_accept(void *arg)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    lport = ntohs(a.sin_port);
    ivy_thread *acc = ivy_spawn(acceptor, (void *)(intptr_t)lfd);
    ivy_sleep(0.02); /* the acceptor waits in accept meanwhile, the ticker ticks */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char buf[4];
    assert_int_equal(recv(fd, buf, 4, MSG_WAITALL), 2); /* then end of stream */
    assert_memory_equal(buf, "hi", 2);
    ivy_join(acc, NULL);
    close(fd);
    close(lfd);
    stop_ticker();
    return NULL;
}

static void connect_and_accept_are_green(void **state)
{
    assert_int_equal(run_green(connect_accept, NULL), 0);
}

static void *waits(void *arg)
{
    struct pollfd p = {.fd = sp[0], .events = POLLIN};
    int64_t t0 = now_ns();
    assert_int_equal(poll(&p, 1, 30), 0);
    struct timespec ts = {0, 30 * MS};
    assert_int_equal(ppoll(&p, 1, &ts, NULL), 0);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(sp[0], &rd);
    struct timeval tv = {0, 30000};
    assert_int_equal(select(sp[0] + 1, &rd, NULL, NULL, &tv), 0);
    assert_false(FD_ISSET(sp[0], &rd));
    assert_int_equal(usleep(30000), 0);
    assert_int_equal(nanosleep(&ts, NULL), 0);
    assert_int_equal(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL), 0);
    int64_t waited = now_ns() - t0;
    assert_true(waited >= 170 * MS);
    assert_true(ticks >= 12); /* every one of those let the ticker run */
    ivy_spawn_n(write_later, NULL);
    FD_SET(sp[0], &rd);
    fd_set wr;
    FD_ZERO(&wr);
    assert_int_equal(pselect(sp[0] + 1, &rd, &wr, NULL, NULL, NULL), 1);
    assert_true(FD_ISSET(sp[0], &rd));
    int bad = dup(sp[0]);
    close(bad);
    FD_SET(bad, &rd);
    tv = (struct timeval){1, 0};
    assert_int_equal(select(bad + 1, &rd, NULL, NULL, &tv), -1);
    assert_int_equal(errno, EBADF);
    stop_ticker();
    return NULL;
}

static void poll_select_and_sleeps_are_green(void **state)
{
    assert_int_equal(run_green(waits, NULL), 0);
}

static void *resolve(void *arg)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    assert_int_equal(getaddrinfo("localhost", "80", &hints, &res), 0);
    assert_int_equal(((struct sockaddr_in *)res->ai_addr)->sin_port, htons(80));
    freeaddrinfo(res);
    assert_int_equal(getaddrinfo("no-such-host.invalid", NULL, &hints, &res), EAI_NONAME);
    struct hostent *he = gethostbyname("localhost");
    assert_non_null(he);
    assert_int_equal(he->h_addrtype, AF_INET);
    assert_int_equal(*(uint32_t *)he->h_addr_list[0], htonl(INADDR_LOOPBACK));
    struct hostent h, *r;
    char buf[1024];
    int herr;
    assert_int_equal(gethostbyname_r("localhost", &h, buf, sizeof buf, &r, &herr), 0);
    assert_ptr_equal(r, &h);
    assert_true(h.h_name >= buf && h.h_name < buf + sizeof buf); /* rebased into buf */
    assert_int_equal(*(uint32_t *)h.h_addr_list[0], htonl(INADDR_LOOPBACK));
    stop_ticker();
    return NULL;
}

static void the_resolver_runs_in_the_offload_pool(void **state)
{
    assert_int_equal(run_green(resolve, NULL), 0);
}

static void *ivy_recv_then_close(void *arg)
{
    char c;
    assert_int_equal(ivy_recv(sp[0], &c, 1), 1); /* arms ivy's multishot receive */
    assert_int_equal(close(sp[0]), 0);
    sp[0] = -1;
    stop_ticker();
    return NULL;
}

static void close_cancels_what_ivys_own_receive_holds(void **state)
{
    assert_int_equal(write(sp[1], "x", 1), 1);
    assert_int_equal(run_green(ivy_recv_then_close, NULL), 0);
    char c;
    struct timeval tv = {2, 0};
    setsockopt(sp[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(read(sp[1], &c, 1), 0); /* the socket is really closed: end of stream */
}

static void *os_thread_reads(void *arg)
{
    char c;
    return (void *)(intptr_t)read(sp[0], &c, 1);
}

static void *offloaded_sleep(void *arg)
{
    return (void *)(intptr_t)usleep(1000); /* a pool thread: libc's own usleep */
}

static void *offload_and_main(void *arg)
{
    void *r;
    assert_int_equal(ivy_offload(offloaded_sleep, NULL, &r), 0);
    assert_int_equal((intptr_t)r, 0);
    stop_ticker();
    return NULL;
}

static void elsewhere_every_call_is_libcs(void **state)
{
    assert_true(ivy_green_enabled()); /* linked in: the hub found it */
    char c;
    /* No hub yet, then the hub's own main greenlet: straight to libc, blocking included. */
    assert_int_equal(write(sp[1], "ab", 2), 2);
    assert_int_equal(read(sp[0], &c, 1), 1);
    assert_int_equal(ivy_hub_init(NULL), 0);
    assert_int_equal(read(sp[0], &c, 1), 1);
    assert_int_equal(c, 'b');
    struct timespec ts = {0, 1000000};
    assert_int_equal(nanosleep(&ts, NULL), 0);
    assert_int_equal(run_green(offload_and_main, NULL), 0);
    pthread_t th;
    assert_int_equal(write(sp[1], "c", 1), 1);
    assert_int_equal(pthread_create(&th, NULL, os_thread_reads, NULL), 0);
    void *r;
    pthread_join(th, &r);
    assert_int_equal((intptr_t)r, 1);
    assert_int_equal(ivy_offload_shutdown(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(read_suspends_only_its_green_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(descriptors_made_nonblocking_still_get_eagain, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(socket_receive_timeouts_still_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(fortified_entry_points_are_green_too, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_gives_ecanceled_and_an_expired_scope_etimedout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(blocking_writes_send_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(pipes_are_read_through_the_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_and_accept_are_green, setup, teardown),
        cmocka_unit_test_setup_teardown(accept_honours_its_timeout_and_nonblocking_listeners, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(poll_select_and_sleeps_are_green, setup, teardown),
        cmocka_unit_test_setup_teardown(the_resolver_runs_in_the_offload_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(close_cancels_what_ivys_own_receive_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(elsewhere_every_call_is_libcs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
