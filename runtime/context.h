/*
 * Machine contexts (internal): the assembly switch and the frame a fresh context starts from.
 */
#ifndef IVY_CONTEXT_H
#define IVY_CONTEXT_H

#include <stdint.h>
#include <string.h>

/*
 * Saves the current context's stack pointer in *save_sp and resumes the one at new_sp, where the
 * ivy__ctx_switch call that suspended it returns err.
 */
int ivy__ctx_switch(void **save_sp, void *new_sp, int err);
void ivy__ctx_start(void);

/*
 * Lays out, below top (16-byte aligned), a frame that ivy__ctx_switch resumes into entry().
 * Returns the stack pointer to switch to. entry must never return.
 */
static inline void *ivy__ctx_make(char *top, void (*entry)(void))
{
#if defined(__x86_64__)
    uint64_t *f = (uint64_t *)(void *)top - 8;
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0; fnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
    f[0] = (uint64_t)mxcsr | (uint64_t)fpucw << 32;
    f[1] = f[2] = f[3] = f[4] = 0;     /* r15 r14 r13 r12 */
    f[5] = (uint64_t)(uintptr_t)entry; /* rbx */
    f[6] = 0;                          /* rbp */
    f[7] = (uint64_t)(uintptr_t)ivy__ctx_start;
    return f;
#elif defined(__aarch64__)
    uint64_t *f = (uint64_t *)(void *)top - 20;
    memset(f, 0, 20 * sizeof *f);
    f[0] = (uint64_t)(uintptr_t)entry;           /* x19 */
    f[11] = (uint64_t)(uintptr_t)ivy__ctx_start; /* x30 */
    return f;
#else
#error "ivy: no context switch for this architecture (x86-64 and aarch64 are supported)"
#endif
}

#endif
