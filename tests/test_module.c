/*
 * App modules (`ivy serve --app ./x.so`): each load error refused before any worker starts,
 * with one line naming the cause and status 2; a module rebuilt and SIGHUPed under wrk load
 * deploys with no failed request and every later response from the new code; a module that
 * links libivy.so itself still runs on the ivy process's runtime (one hub per worker); a TCP
 * module. Modules are compiled by the test with cc against include/ivy/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "util.h"

static char dir[64], logpath[96];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/ivy-test-module.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(logpath, sizeof logpath, "%s/serve.log", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Compiles source (text) into dir/name.so with extra cc flags; asserts it built. */
static const char *build_module(const char *name, const char *source, const char *flags)
{
    static char so[128];
    char src[128], cmd[1024];
    snprintf(src, sizeof src, "%s/%s.c", dir, name);
    snprintf(so, sizeof so, "%s/%s.so", dir, name);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs(source, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cc -shared -fPIC -Wall -Werror -I%s/include -I%s/include -o %s.tmp %s %s && "
             "mv %s.tmp %s",
             getenv("IVY_SOURCE_DIR"), getenv("IVY_BUILD_DIR"), so, src, flags, so, so);
    assert_int_equal(system(cmd), 0);
    return so;
}

/* `ivy serve --app so` that must fail: its status, the log in logpath. */
static int serve_fails(const char *so)
{
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", free_port());
    pid_t pid = spawn_logged(
        (const char *const[]){ivy_binary(), "serve", "--app", so, "--listen", listen, NULL},
        logpath);
    int status = wait_exit_ms(pid, 10000);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void assert_refused(const char *so, const char *cause)
{
    assert_int_equal(serve_fails(so), 2);
    char want[512];
    snprintf(want, sizeof want, "ivy: module %s: %s\n", so, cause);
    assert_string_equal(slurp(logpath), want); /* that line alone: no worker was started */
}

#define HANDLER                                                                                    \
    "#include <ivy/ivy.h>\n"                                                                       \
    "__attribute__((unused)) static int h(ivy_http_req *r, void *a)\n"                             \
    "{ return ivy_http_respond(r, 200, 0, \"x\", 1); }\n"

static void each_load_error_is_refused_with_status_2(void **state)
{
    assert_refused("/nonexistent/app.so", "No such file or directory");
    assert_refused(dir, "not a regular file");
    const char *so = build_module("nosym", HANDLER "int unrelated = 1;\n", "");
    assert_refused(so, "exports no 'ivy_module' (define const struct ivy_module ivy_module = "
                       "{.abi = IVY_MODULE_ABI, ...})");
    so = build_module(
        "abi", HANDLER "const struct ivy_module ivy_module = {.abi = 999, .http = h};\n", "");
    assert_refused(so, "built for module ABI 999, this ivy has ABI 1: rebuild it");
    so = build_module("both",
                      HANDLER "static void t(int fd, void *a) {}\n"
                              "const struct ivy_module ivy_module = {.abi = IVY_MODULE_ABI, "
                              ".http = h, .tcp = t};\n",
                      "");
    assert_refused(so, "ivy_module must set exactly one of .http and .tcp");
    so = build_module("undef",
                      HANDLER "void ivy_no_such_call(void);\n"
                              "static int g(ivy_http_req *r, void *a) { ivy_no_such_call(); "
                              "return h(r, a); }\n"
                              "const struct ivy_module ivy_module = {.abi = IVY_MODULE_ABI, "
                              ".http = g};\n",
                      "");
    assert_int_equal(serve_fails(so), 2);
    assert_non_null(strstr(slurp(logpath), "cannot load it: "));
    assert_non_null(strstr(slurp(logpath), "undefined symbol: ivy_no_such_call\n"));
}

static pid_t serve_module(const char *so, int port, const char *workers)
{
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    /* --migrate-req: what a replaced worker's listener still queues moves to its sibling. */
    pid_t pid =
        spawn_logged((const char *const[]){ivy_binary(), "serve", "--app", so, "--listen", listen,
                                           "--workers", workers, "--migrate-req", NULL},
                     logpath);
    if (!wait_for_text(logpath, "ivy: ready: ", 10000)) fail_msg("%s", slurp(logpath));
    return pid;
}

static void stop_serve(pid_t pid)
{
    assert_true(terminated_cleanly(pid, 10000));
}

/* One request on a new connection: the body (static buffer). */
static const char *get(int port, const char *path)
{
    static char buf[4096];
    int fd = dial(port);
    assert_true(fd >= 0);
    char req[256];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    read_all(fd, buf, sizeof buf);
    close(fd);
    const char *body = strstr(buf, "\r\n\r\n");
    return body ? body + 4 : buf;
}

static const char *app_module_source(void)
{
    static char src[8192];
    char path[512];
    snprintf(path, sizeof path, "%s/examples/app_module.c", getenv("IVY_SOURCE_DIR"));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    src[fread(src, 1, sizeof src - 1, f)] = 0;
    fclose(f);
    return src;
}

static void rebuilt_module_deploys_on_sighup_under_load(void **state)
{
    int port = free_port();
    const char *so = build_module("app", app_module_source(), "-DAPP_VERSION='\"v1\"'");
    pid_t pid = serve_module(so, port, "2");
    assert_string_equal(get(port, "/version"), "v1\n");
    const char *hello = get(port, "/hello/ada");
    if (strcmp(hello, "hello, ada (app_module v1, worker 0)\n"))
        assert_string_equal(hello, "hello, ada (app_module v1, worker 1)\n");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "wrk -t1 -c8 -d4s http://127.0.0.1:%d/version 2>&1", port);
    FILE *wrk = popen(cmd, "r");
    assert_non_null(wrk);
    sleep_ms(1000);
    build_module("app", app_module_source(), "-DAPP_VERSION='\"v2\"'"); /* renamed into place */
    kill(pid, SIGHUP);
    static char out[8192];
    out[fread(out, 1, sizeof out - 1, wrk)] = 0;
    pclose(wrk);
    assert_non_null(strstr(out, " requests in "));
    if (strstr(out, "Socket errors") || strstr(out, "Non-2xx")) fail_msg("%s", out);
    /* Both replacements are in by now (4 s): every answer comes from the new code. */
    for (int i = 0; i < 50; i++)
        assert_string_equal(get(port, "/version"), "v2\n");
    assert_non_null(strstr(slurp(logpath), "SIGHUP: replacing workers one at a time\n"));
    stop_serve(pid);
}

static void broken_rebuild_is_not_loaded_on_sighup(void **state)
{
    int port = free_port();
    const char *so = build_module("app", app_module_source(), "-DAPP_VERSION='\"v1\"'");
    pid_t pid = serve_module(so, port, "1");
    build_module("app", HANDLER "int nothing_here;\n", "");
    kill(pid, SIGHUP);
    char want[256];
    snprintf(want, sizeof want, "SIGHUP: not reloading: module %s: exports no 'ivy_module'", so);
    assert_true(wait_for_text(logpath, want, 5000));
    assert_string_equal(get(port, "/version"), "v1\n"); /* the old workers serve on */
    stop_serve(pid);
}

/* A module that linked libivy.so: its calls still reach the process's own hub, not a second
 * runtime's (which would have no green thread running: ivy_self() NULL, worker index -1). */
static void module_linking_libivy_uses_the_process_runtime(void **state)
{
    char flags[512];
    snprintf(flags, sizeof flags, "-L%s -Wl,-rpath,%s -livy", getenv("IVY_BUILD_DIR"),
             getenv("IVY_BUILD_DIR"));
    const char *so = build_module(
        "linked",
        "#include <ivy/ivy.h>\n#include <stdio.h>\n"
        "static int h(ivy_http_req *r, void *a) {\n"
        "    char b[64]; struct ivy_hub_stats st; ivy_hub_stats(&st);\n"
        "    int n = snprintf(b, sizeof b, \"self %d worker %d threads %d\\n\", ivy_self() != 0,\n"
        "                     ivy_worker_index(), st.threads_alive > 0);\n"
        "    return ivy_http_respond(r, 200, 0, b, (size_t)n);\n}\n"
        "const struct ivy_module ivy_module = {.abi = IVY_MODULE_ABI, .http = h};\n",
        flags);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "readelf -d %s | grep -q 'NEEDED.*libivy.so'", so);
    assert_int_equal(system(cmd), 0); /* it really carries its own libivy */
    int port = free_port();
    pid_t pid = serve_module(so, port, "1");
    assert_string_equal(get(port, "/"), "self 1 worker 0 threads 1\n");
    stop_serve(pid);
}

static void tcp_module_serves_connections(void **state)
{
    const char *so = build_module(
        "tcp",
        "#include <ivy/ivy.h>\n"
        "static int n;\n"
        "static int init(void *a) { n = 100; return 0; }\n"
        "static void conn(int fd, void *a) {\n"
        "    char b[64]; ssize_t k;\n"
        "    while ((k = ivy_recv(fd, b, sizeof b)) > 0) { b[0] = (char)('0' + n++ % 10); "
        "ivy_sendall(fd, b, (size_t)k); }\n}\n"
        "const struct ivy_module ivy_module = {.abi = IVY_MODULE_ABI, .tcp = conn, "
        ".worker_init = init};\n",
        "");
    int port = free_port();
    pid_t pid = serve_module(so, port, "1");
    int fd = dial(port);
    assert_true(fd >= 0);
    char buf[8];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(send(fd, "xyz", 3, 0), 3);
        assert_int_equal(recv(fd, buf, sizeof buf, 0), 3);
        assert_memory_equal(buf, i == 0 ? "0yz" : i == 1 ? "1yz" : "2yz", 3);
    }
    close(fd);
    stop_serve(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(each_load_error_is_refused_with_status_2, setup, teardown),
        cmocka_unit_test_setup_teardown(rebuilt_module_deploys_on_sighup_under_load, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(broken_rebuild_is_not_loaded_on_sighup, setup, teardown),
        cmocka_unit_test_setup_teardown(module_linking_libivy_uses_the_process_runtime, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tcp_module_serves_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
