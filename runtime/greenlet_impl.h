/*
 * Greenlet internals shared with the hub. A greenlet's struct (and its owner's extra bytes)
 * live at the top of its own stack, so a greenlet costs no allocation beyond its stack and a
 * suspended one touches a single page.
 */
#ifndef IVY_GREENLET_IMPL_H
#define IVY_GREENLET_IMPL_H

#include "ivy/greenlet.h"
#include "stack.h"

#if defined(__SANITIZE_ADDRESS__)
#define IVY_ASAN 1
#else
#define IVY_ASAN 0
#endif

#define IVY_LIKELY(x)   __builtin_expect(!!(x), 1)
#define IVY_UNLIKELY(x) __builtin_expect(!!(x), 0)

enum ivy_gstate { IVY_G_NEW, IVY_G_ACTIVE, IVY_G_DEAD };

struct ivy_tstate;

struct ivy_greenlet {
    /* What a switch touches comes first: one cache line (the struct is 64-byte aligned). */
    void *sp;   /* saved stack pointer while suspended */
    void **out; /* while suspended: where its pending switch wants the value it resumes with */
    struct ivy_tstate *ts; /* owning thread */
    unsigned char state;
    ivy_greenlet *parent;
    ivy_greenlet *first_child, *next_sibling, *prev_sibling;
    ivy_run_fn run;
    const char *name;
    void *data; /* the owner's: the hub keeps its green thread here */
    struct ivy_stack stack;
#if IVY_ASAN
    void *asan_fake;
    const void *asan_bottom;
    size_t asan_size;
#endif
};

/*
 * As ivy_greenlet_new, and reserves extra bytes (16-byte aligned) beside the greenlet at the top
 * of its stack, returned in *extra; they live as long as the greenlet.
 */
ivy_greenlet *ivy__greenlet_new_ex(ivy_run_fn run, ivy_greenlet *parent, size_t stack_size,
                                   size_t extra, void **extra_out);

#endif
