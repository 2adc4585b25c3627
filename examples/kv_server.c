/*
 * A TCP app with per-worker state: a tiny key-value server speaking lines.
 *
 *     SET key value   ->  OK
 *     GET key         ->  VALUE value   or  NONE
 *     anything else   ->  ERR
 *
 * Each worker process builds its own table in worker_init (no locks: nothing is shared between
 * workers, so with several workers a key lives in the worker that took its connection) and
 * frees it in worker_exit, after the drain. ivy_cluster_run runs kv_conn in a green thread per
 * connection and registers each one: a draining worker closes connections waiting for a line.
 *
 * Run: kv_server [PORT [WORKERS]], then: printf 'SET a 1\nGET a\n' | nc 127.0.0.1 7070
 */
#include <ivy/ivy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS = 1024, MAX_LINE = 1024 };

struct entry {
    char *key, *value;
    struct entry *next;
};

struct table {
    struct entry *slot[SLOTS];
    unsigned long sets;
};

static struct table *table; /* this worker's */

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % SLOTS;
}

static int kv_init(void *arg)
{
    table = calloc(1, sizeof *table);
    return table ? 0 : -1; /* a negative value ends the worker */
}

static void kv_exit(void *arg)
{
    for (unsigned i = 0; i < SLOTS; i++)
        for (struct entry *e = table->slot[i], *next; e; e = next) {
            next = e->next;
            free(e->key);
            free(e->value);
            free(e);
        }
    fprintf(stderr, "kv_server: worker %d: %lu sets, exiting\n", ivy_worker_index(), table->sets);
    free(table);
}

static struct entry *find(const char *key)
{
    for (struct entry *e = table->slot[hash(key)]; e; e = e->next)
        if (!strcmp(e->key, key)) return e;
    return NULL;
}

static int set(const char *key, const char *value)
{
    struct entry *e = find(key);
    char *v = strdup(value);
    if (!v) return -1;
    if (!e) {
        if (!(e = calloc(1, sizeof *e)) || !(e->key = strdup(key))) {
            free(e);
            free(v);
            return -1;
        }
        unsigned h = hash(key);
        e->next = table->slot[h];
        table->slot[h] = e;
    }
    free(e->value);
    e->value = v;
    table->sets++;
    return 0;
}

/* One line in, one line out; the line is NUL-terminated in place, without its newline. */
static int answer(int fd, char *line)
{
    char out[MAX_LINE + 16];
    int n;
    char *key = line + 4, *value;
    struct entry *e;
    if (!strncmp(line, "SET ", 4) && (value = strchr(key, ' ')) && value > key) {
        *value++ = 0;
        n = snprintf(out, sizeof out, set(key, value) == 0 ? "OK\n" : "ERR\n");
    } else if (!strncmp(line, "GET ", 4) && *key && !strchr(key, ' ')) {
        e = find(key);
        n = e ? snprintf(out, sizeof out, "VALUE %s\n", e->value)
              : snprintf(out, sizeof out, "NONE\n");
    } else {
        n = snprintf(out, sizeof out, "ERR\n");
    }
    return ivy_sendall(fd, out, (size_t)n) < 0 ? -1 : 0;
}

static void kv_conn(int fd, void *arg)
{
    ivy_reader *in = ivy_reader_new(fd, MAX_LINE);
    const char *line;
    ssize_t n;
    char buf[MAX_LINE + 1];
    while (in && (n = ivy_readline(in, &line)) > 0) {
        memcpy(buf, line, (size_t)n);
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        if (answer(fd, buf) < 0) break;
        ivy_worker_count(1, (uint64_t)n, 0);
    }
    ivy_reader_free(in); /* ivy closes fd when kv_conn returns */
}

int main(int argc, char **argv)
{
    struct ivy_cluster_options o = {
        .port = argc > 1 ? atoi(argv[1]) : 7070,
        .workers = argc > 2 ? atoi(argv[2]) : 0,
        .app_name = "kv",
        .conn = kv_conn,
        .worker_init = kv_init,
        .worker_exit = kv_exit,
        .argv = argv,
    };
    return ivy_cluster_run(&o);
}
