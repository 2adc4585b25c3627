/*
 * Greenlets: the tree, switch/throw, and their exact semantics (see include/ivy/greenlet.h).
 *
 * Invariants:
 * - Each thread has one ivy_tstate (thread-local) holding its main greenlet, which has no
 *   stack of its own, is always active and never dies; `current` is the running greenlet.
 * - A greenlet's struct sits at the top of its stack (ivy__greenlet_new_ex), so it lives until
 *   ivy_greenlet_free, dead or not.
 * - A value crosses a switch before it: the switcher stores it in the resumed greenlet's *out,
 *   kept in its struct while it is suspended (or in xfer_value, run's argument, on first entry),
 *   and the error is the assembly's return value on the resumed side.
 * - Every path that resumes a greenlet goes through resume(), which walks up from dead
 *   greenlets and kills not-started ones that an error reaches, as greenlet does.
 */
#include "greenlet_impl.h"
#include "context.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if IVY_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

struct ivy_tstate {
    struct ivy_tstate *self; /* NULL until set up: one load yields the address or "not yet" */
    ivy_greenlet *current;
    ivy_greenlet main;
    void *xfer_value; /* run's argument, for a greenlet's first entry */
#if IVY_ASAN
    ivy_greenlet *from; /* the greenlet we switched away from, to learn its stack bounds */
#endif
};

static __thread struct ivy_tstate tstate __attribute__((tls_model("initial-exec")));

static void install_fault_handler(void);

static struct ivy_tstate *tstate_get(void)
{
    struct ivy_tstate *ts = &tstate;
    if (IVY_UNLIKELY(!ts->self)) {
        ts->self = ts;
        ts->main.state = IVY_G_ACTIVE;
        ts->main.ts = ts;
        ts->main.name = "main";
        ts->current = &ts->main;
    }
    return ts;
}

ivy_greenlet *ivy_current(void)
{
    return tstate_get()->current;
}

/* ---- the tree ---------------------------------------------------------------------------- */

static void link_child(ivy_greenlet *parent, ivy_greenlet *g)
{
    g->parent = parent;
    g->prev_sibling = NULL;
    g->next_sibling = parent->first_child;
    if (parent->first_child) parent->first_child->prev_sibling = g;
    parent->first_child = g;
}

static void unlink_child(ivy_greenlet *g)
{
    if (g->prev_sibling)
        g->prev_sibling->next_sibling = g->next_sibling;
    else
        g->parent->first_child = g->next_sibling;
    if (g->next_sibling) g->next_sibling->prev_sibling = g->prev_sibling;
    g->next_sibling = g->prev_sibling = NULL;
}

ivy_greenlet *ivy_greenlet_parent(const ivy_greenlet *g)
{
    return g->parent;
}

int ivy_greenlet_set_parent(ivy_greenlet *g, ivy_greenlet *parent)
{
    struct ivy_tstate *ts = tstate_get();
    if (!g || !parent || g == &g->ts->main) return -EINVAL;
    if (g->ts != ts || parent->ts != ts) return -EPERM;
    for (ivy_greenlet *p = parent; p; p = p->parent)
        if (p == g) return -EINVAL;
    unlink_child(g);
    link_child(parent, g);
    return 0;
}

bool ivy_greenlet_started(const ivy_greenlet *g)
{
    return g->state != IVY_G_NEW;
}
bool ivy_greenlet_active(const ivy_greenlet *g)
{
    return g->state == IVY_G_ACTIVE;
}
bool ivy_greenlet_dead(const ivy_greenlet *g)
{
    return g->state == IVY_G_DEAD;
}
bool ivy_greenlet_is_main(const ivy_greenlet *g)
{
    return g == &g->ts->main;
}
void ivy_greenlet_set_name(ivy_greenlet *g, const char *name)
{
    g->name = name;
}
const char *ivy_greenlet_name(const ivy_greenlet *g)
{
    return g->name;
}
size_t ivy_greenlet_stack_size(const ivy_greenlet *g)
{
    return g->stack.size;
}

/* ---- switching --------------------------------------------------------------------------- */

static void greenlet_entry(void);

#define IVY_ALWAYS_INLINE inline __attribute__((always_inline))

/*
 * Switches stacks; returns, once some greenlet resumes `from`, the error that one passed. Outside
 * ASan this is a plain tail call, so each public switch ends by jumping into the assembly, which
 * jumps straight back to the resumed greenlet's own call site.
 */
static IVY_ALWAYS_INLINE int stack_switch(struct ivy_tstate *ts, ivy_greenlet *from,
                                          ivy_greenlet *to, int err)
{
#if IVY_ASAN
    /* A dead greenlet never comes back: NULL lets ASan drop its fake stack. */
    __sanitizer_start_switch_fiber(from->state == IVY_G_DEAD ? NULL : &from->asan_fake,
                                   to->asan_bottom, to->asan_size);
    ts->from = from;
    err = ivy__ctx_switch(&from->sp, to->sp, err);
    ts = &tstate;
    __sanitizer_finish_switch_fiber(from->asan_fake, &ts->from->asan_bottom, &ts->from->asan_size);
    return err;
#else
    (void)ts;
    return ivy__ctx_switch(&from->sp, to->sp, err);
#endif
}

/* What a resumed switch hands its caller. */
static inline int deliver(void *value, int err, void **out)
{
    if (out) *out = err ? NULL : value;
    return err;
}

/*
 * Resumes `to`, which is active, with (value, err); returns when the caller is switched back to.
 * The value is handed over before the switch, into the resumed greenlet's *out (or run's
 * argument on first entry), and the error travels through the assembly's return value: nothing
 * is left to do on the far side of the switch. That is what lets the switch be a tail call:
 * every C frame returning after it would be a return-stack predictor miss, since a switch
 * leaves that predictor one entry out of step.
 */
static IVY_ALWAYS_INLINE int resume_live(struct ivy_tstate *ts, ivy_greenlet *to, void *value,
                                         int err, void **out)
{
    ivy_greenlet *self = ts->current;
    if (IVY_UNLIKELY(to == self)) return deliver(value, err, out);
    if (IVY_UNLIKELY(to->state == IVY_G_NEW)) {
        to->state = IVY_G_ACTIVE;
        ts->xfer_value = value; /* run's argument; err is 0 here */
    } else if (to->out) {
        *to->out = err ? NULL : value;
    }
    self->out = out;
    ts->current = to;
    return stack_switch(ts, self, to, err);
}

/*
 * As resume, for a `to` that is not active: a dead greenlet passes (value, err) to its parent,
 * and a not-started one reached by an error dies of it without running (IVY_EXIT then reaches
 * its parent as a plain value).
 */
static __attribute__((noinline)) int resume_slow(struct ivy_tstate *ts, ivy_greenlet *to,
                                                 void *value, int err, void **out)
{
    for (;;) {
        if (to->state == IVY_G_DEAD) {
            to = to->parent;
        } else if (to->state == IVY_G_NEW && err) {
            to->state = IVY_G_DEAD;
            if (err == IVY_EXIT) {
                value = ivy_err_ptr(IVY_EXIT);
                err = 0;
            }
            to = to->parent;
        } else {
            return resume_live(ts, to, value, err, out);
        }
    }
}

/* Resumes `to` with (value, err), or, when it is dead, its nearest live ancestor. */
static IVY_ALWAYS_INLINE int resume(struct ivy_tstate *ts, ivy_greenlet *to, void *value, int err,
                                    void **out)
{
    if (IVY_UNLIKELY(to->state != IVY_G_ACTIVE)) return resume_slow(ts, to, value, err, out);
    return resume_live(ts, to, value, err, out);
}

int ivy_switch(ivy_greenlet *g, void *in, void **out)
{
    /* No tstate_get(): a greenlet of this thread was made by it, so its state is set up, and
       one of another thread's never matches self, NULL or not. Comparing with self (one load)
       rather than &tstate (an add to the thread pointer) is the cheaper test. */
    struct ivy_tstate *ts = &tstate;
    if (IVY_UNLIKELY(g->ts != ts->self)) return -EPERM;
    return resume(ts, g, in, 0, out);
}

/* A greenlet that dies of err hands its parent the error, or a value for IVY_EXIT. */
static int die_and_resume_parent(struct ivy_tstate *ts, ivy_greenlet *g, void *value, int err,
                                 void **out)
{
    g->state = IVY_G_DEAD;
    if (err == IVY_EXIT) {
        value = ivy_err_ptr(IVY_EXIT);
        err = 0;
    }
    return resume(ts, g->parent, value, err, out);
}

int ivy_throw(ivy_greenlet *g, int err, void **out)
{
    struct ivy_tstate *ts = tstate_get();
    if (g->ts != ts) return -EPERM;
    if (err >= 0 || err < IVY_EXIT) return -EINVAL;
    if (g->state != IVY_G_ACTIVE) return die_and_resume_parent(ts, g, NULL, err, out);
    return resume(ts, g, NULL, err, out);
}

/* First frame of every greenlet: run, then die into the parent. */
static void greenlet_entry(void)
{
    struct ivy_tstate *ts = &tstate;
    ivy_greenlet *self = ts->current;
#if IVY_ASAN
    __sanitizer_finish_switch_fiber(NULL, &ts->from->asan_bottom, &ts->from->asan_size);
#endif
    void *v = self->run(ts->xfer_value);
    ts = &tstate;
    int err = ivy_ptr_err(v);
    die_and_resume_parent(ts, self, err ? NULL : v, err, NULL);
    abort(); /* a dead greenlet is never switched back to */
}

/* ---- creation and release ---------------------------------------------------------------- */

ivy_greenlet *ivy__greenlet_new_ex(ivy_run_fn run, ivy_greenlet *parent, size_t stack_size,
                                   size_t extra, void **extra_out)
{
    struct ivy_tstate *ts = tstate_get();
    if (!run) {
        errno = EINVAL;
        return NULL;
    }
    if (!parent) parent = ts->current;
    if (parent->ts != ts) {
        errno = EPERM;
        return NULL;
    }
    install_fault_handler(); /* a thread-local test after the first time */

    struct ivy_stack st;
    int rc = ivy__stack_alloc(&st, stack_size);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    size_t head = (sizeof(ivy_greenlet) + 15) & ~(size_t)15;
    extra = (extra + 15) & ~(size_t)15;
    char *top = st.base + st.size - 64; /* 64: the pool's free-list link lives above */
    /* Cache-line aligned, so the fields a switch touches share one line. */
    ivy_greenlet *g = (ivy_greenlet *)(void *)(top - ((head + extra + 63) & ~(size_t)63));
    memset(g, 0, sizeof *g);
    g->run = run;
    g->ts = ts;
    g->stack = st;
    g->state = IVY_G_NEW;
    g->sp = ivy__ctx_make((char *)g, greenlet_entry);
#if IVY_ASAN
    g->asan_bottom = st.base;
    g->asan_size = st.size;
#endif
    link_child(parent, g);
    if (extra_out) {
        *extra_out = (char *)g + head;
        memset(*extra_out, 0, extra);
    }
    return g;
}

ivy_greenlet *ivy_greenlet_new(ivy_run_fn run, ivy_greenlet *parent, size_t stack_size)
{
    return ivy__greenlet_new_ex(run, parent, stack_size, 0, NULL);
}

static void reparent_children(ivy_greenlet *g)
{
    while (g->first_child) {
        ivy_greenlet *c = g->first_child;
        unlink_child(c);
        link_child(g->parent, c);
    }
}

int ivy_greenlet_free(ivy_greenlet *g)
{
    struct ivy_tstate *ts = tstate_get();
    if (!g) return 0;
    if (g->ts != ts) return -EPERM;
    if (g == &ts->main) return -EINVAL;
    if (g == ts->current) return -EBUSY;
    /*
     * Children go to g's parent, where switching to them would have led after g's death. First,
     * before the kill: the caller may be g's descendant, and g is about to become its child.
     */
    reparent_children(g);
    if (g->state == IVY_G_ACTIVE) {
        /* Kill it as greenlet's collector does: the exit error, with us as the parent. */
        if (g->parent != ts->current) {
            unlink_child(g);
            link_child(ts->current, g);
        }
        ivy_throw(g, IVY_EXIT, NULL);
        if (g->state != IVY_G_DEAD) return -EBUSY; /* it refused to die and switched back */
        reparent_children(g);                      /* any it made while dying */
    }
    unlink_child(g);
    struct ivy_stack st = g->stack;
    ivy__stack_release(&st);
    return 0;
}

/* ---- faults ------------------------------------------------------------------------------ */

static size_t fmt_str(char *p, const char *s)
{
    size_t n = 0;
    while (s[n]) {
        p[n] = s[n];
        n++;
    }
    return n;
}

static size_t fmt_num(char *p, uintptr_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0, i = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n)
        p[i++] = tmp[--n];
    return i;
}

/* A greenlet's name is the user's string, of any length: at most this much of it goes into the
   fault message, whose buffer is on the small alternate stack. */
#define FAULT_NAME_MAX 128

static size_t fmt_greenlet(char *p, const ivy_greenlet *g)
{
    if (!g) return fmt_str(p, "(none)");
    size_t n = fmt_str(p, "'");
    if (g->name) {
        size_t k = 0;
        while (k < FAULT_NAME_MAX && g->name[k]) {
            p[n + k] = g->name[k];
            k++;
        }
        n += k;
        if (g->name[k]) n += fmt_str(p + n, "...");
    } else {
        n += fmt_str(p + n, "0x");
        n += fmt_num(p + n, (uintptr_t)g, 16);
    }
    return n + fmt_str(p + n, "'");
}

/* The SIGSEGV and SIGBUS handlers in place before ours (a crash reporter, a runtime that maps
   memory on demand): every fault that is not a guard-page hit is theirs. */
static struct sigaction prev_segv, prev_bus;

/* Hands a fault to the handler installed before ours; false when there was none. Its return
   re-executes the faulting instruction, as it would have without us. */
static bool chain_fault(int sig, siginfo_t *si, void *uctx)
{
    const struct sigaction *prev = sig == SIGSEGV ? &prev_segv : &prev_bus;
    if (prev->sa_flags & SA_SIGINFO) {
        if (!prev->sa_sigaction) return false;
        prev->sa_sigaction(sig, si, uctx);
        return true;
    }
    if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) return false;
    prev->sa_handler(sig);
    return true;
}

/*
 * Runs on the alternate signal stack: async-signal-safe code only. A fault in the guard page of
 * the running greenlet's stack is a stack overflow; anything else goes to the handler that was
 * there before ours, or without one is reported as it is and re-raised with the default action.
 */
static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    char msg[512]; /* the fixed text, two numbers and at most FAULT_NAME_MAX of the name */
    size_t n = 0;
    struct ivy_tstate *ts = &tstate;
    ivy_greenlet *g = ts->self ? ts->current : NULL;
    if (g && g != &ts->main && ivy__stack_guard_hit(&g->stack, si->si_addr)) {
        n += fmt_str(msg + n, "ivy: stack overflow in greenlet ");
        n += fmt_greenlet(msg + n, g);
        n += fmt_str(msg + n, ": its stack of ");
        n += fmt_num(msg + n, g->stack.size, 10);
        n += fmt_str(msg + n, " bytes ran into the guard page; give it a larger stack\n");
        (void)!write(STDERR_FILENO, msg, n);
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    if (chain_fault(sig, si, uctx)) return;
    n += fmt_str(msg + n, sig == SIGSEGV ? "ivy: fatal SIGSEGV" : "ivy: fatal SIGBUS");
    n += fmt_str(msg + n, " at address 0x");
    n += fmt_num(msg + n, (uintptr_t)si->si_addr, 16);
    n += fmt_str(msg + n, " in greenlet ");
    n += fmt_greenlet(msg + n, g);
    n += fmt_str(msg + n, "\n");
    (void)!write(STDERR_FILENO, msg, n);
    signal(sig, SIG_DFL); /* returning re-executes the fault under the default action */
}

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static __thread bool altstack_set;

static void install_handlers_once(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &prev_segv);
    sigaction(SIGBUS, &sa, &prev_bus);
}

/* The handler must run on another stack: the faulting one has no room left. */
static void install_fault_handler(void)
{
    if (IVY_LIKELY(altstack_set)) return;
    altstack_set = true;
    size_t size = 64 * 1024;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem != MAP_FAILED) {
        stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
        sigaltstack(&ss, NULL);
    }
    pthread_once(&fault_once, install_handlers_once);
}
