/*
 * Greenlet stacks (internal). A stack is [base, base + size) with, when guarded, one PROT_NONE
 * page just below base. Default-size stacks are carved from slabs (one mmap for many stacks) and
 * recycled through a per-thread LIFO, so a recycled stack is warm; other sizes get a mapping of
 * their own. Memory costs only what was touched.
 */
#ifndef IVY_STACK_H
#define IVY_STACK_H

#include <stdbool.h>
#include <stddef.h>

struct ivy_stack {
    char *base;
    size_t size;
    bool guarded;
    bool pooled; /* default size: back to the pool on release, else munmap */
};

int ivy__stack_alloc(struct ivy_stack *st, size_t size);
void ivy__stack_release(struct ivy_stack *st);
/* True when addr lies in st's guard page. Async-signal-safe. */
bool ivy__stack_guard_hit(const struct ivy_stack *st, const void *addr);
size_t ivy__page_size(void);

#endif
