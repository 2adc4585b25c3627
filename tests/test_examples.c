/*
 * The examples as their users run them: examples/json_api (the HTTP library and its router under
 * ivy_cluster_run) and examples/kv_server (a TCP app with per-worker state from worker_init,
 * freed by worker_exit after the drain), each started on a free port, talked to with real
 * clients (curl, raw sockets), drained with SIGTERM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "ivy/hub.h"
#include "util.h"

static char logpath[64];

/* The example `name` from the build under test, on port with one worker, once it is ready. */
static pid_t start_example(const char *name, int port)
{
    static char path[512], portbuf[16];
    snprintf(path, sizeof path, "%s/examples/%s", getenv("IVY_BUILD_DIR"), name);
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(logpath, sizeof logpath, "/tmp/ivy-test-%s-%d.log", name, (int)getpid());
    pid_t pid = spawn_logged((const char *const[]){path, portbuf, "1", NULL}, logpath);
    assert_true(pid > 0);
    if (!wait_for_text(logpath, "ivy: ready: 1 workers", 10000)) fail_msg("%s", slurp(logpath));
    return pid;
}

static void stop_example(pid_t pid)
{
    assert_true(terminated_cleanly(pid, 10000));
}

/* curl's whole output for args (status line, headers and body with -i). */
static const char *curl(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -sS -i --max-time 5 %s 2>&1", args);
    return command_output(cmd);
}

static const char *body_of(const char *response)
{
    const char *b = strstr(response, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void json_api_routes_parameters_and_bodies(void **state)
{
    int port = free_port();
    pid_t pid = start_example("json_api", port);
    char args[256];
    snprintf(args, sizeof args, "http://127.0.0.1:%d/users/42", port);
    const char *r = curl(args);
    assert_memory_equal(r, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(r, "\r\nContent-Type: application/json\r\nContent-Length: 26\r\n"));
    assert_string_equal(body_of(r), "{\"id\":42,\"name\":\"user-42\"}");

    snprintf(args, sizeof args, "-d '{\"name\": \"ada\"}' http://127.0.0.1:%d/users", port);
    r = curl(args);
    assert_memory_equal(r, "HTTP/1.1 201 Created\r\n", 22);
    assert_non_null(strstr(r, "\r\nLocation: /users\r\n"));
    assert_string_equal(body_of(r), "{\"id\":1,\"name\":\"ada\",\"worker\":0}");
    snprintf(args, sizeof args, "-d '{\"name\":\"bob\"}' http://127.0.0.1:%d/users", port);
    assert_string_equal(body_of(curl(args)), "{\"id\":2,\"name\":\"bob\",\"worker\":0}");
    snprintf(args, sizeof args, "-d '{\"nom\":1}' http://127.0.0.1:%d/users", port);
    r = curl(args);
    assert_memory_equal(r, "HTTP/1.1 400 Bad Request\r\n", 26);
    assert_string_equal(body_of(r), "{\"error\":\"name\"}");

    snprintf(args, sizeof args, "http://127.0.0.1:%d/users/abc", port);
    r = curl(args);
    assert_memory_equal(r, "HTTP/1.1 404 Not Found\r\n", 24);
    assert_string_equal(body_of(r), "404 Not Found\n");
    snprintf(args, sizeof args, "-X DELETE http://127.0.0.1:%d/users", port);
    r = curl(args);
    assert_memory_equal(r, "HTTP/1.1 405 Method Not Allowed\r\n", 33);
    assert_non_null(strstr(r, "\r\nAllow: POST\r\n"));
    snprintf(args, sizeof args, "http://127.0.0.1:%d/health", port);
    assert_string_equal(body_of(curl(args)), "ok\n");
    stop_example(pid);
}

/* Sends what, then reads until want's length arrived; compares exactly. */
static void kv_exchange(int fd, const char *what, const char *want)
{
    size_t n = strlen(want), got = 0;
    char buf[512];
    assert_int_equal(send(fd, what, strlen(what), 0), (ssize_t)strlen(what));
    while (got < n) {
        ssize_t k = recv(fd, buf + got, n - got, 0);
        assert_true(k > 0);
        got += (size_t)k;
    }
    buf[got] = 0;
    assert_string_equal(buf, want);
}

static void kv_server_keeps_per_worker_state_and_drains(void **state)
{
    int port = free_port();
    pid_t pid = start_example("kv_server", port);
    int a = dial(port);
    assert_true(a >= 0);
    kv_exchange(a, "SET a 1\nGET a\nGET b\nbogus\n", "OK\nVALUE 1\nNONE\nERR\n");
    kv_exchange(a, "SET a two words\r\n", "OK\n");
    close(a);
    int b = dial(port); /* the table outlives connections: it is the worker's */
    assert_true(b >= 0);
    kv_exchange(b, "GET a\n", "VALUE two words\n");
    /* b waits for its next line: a draining worker closes it after the idle grace, without
     * waiting out the 30 s graceful timeout, then runs worker_exit. */
    uint64_t t0 = ivy_now_ns();
    kill(pid, SIGTERM);
    char buf[16];
    assert_int_equal(recv(b, buf, sizeof buf, 0), 0);
    int status = wait_exit_ms(pid, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(ivy_now_ns() - t0 < 5000000000ull);
    assert_non_null(strstr(slurp(logpath), "kv_server: worker 0: 2 sets, exiting\n"));
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_api_routes_parameters_and_bodies),
        cmocka_unit_test(kv_server_keeps_per_worker_state_and_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
