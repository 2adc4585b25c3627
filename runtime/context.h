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
 * Lays out, below top (16-byte aligned), a frame that ivy__ctx_switch resumes into entry(), the
 * frame the switch_*.S of this architecture describes. Unless IVY_SHARED_FPENV, it carries the
 * caller's FP control words: a new greenlet starts with its creator's rounding and masks.
 * Returns the stack pointer to switch to. entry must never return.
 */
static inline void *ivy__ctx_make(char *top, void (*entry)(void))
{
#if defined(__x86_64__)
#if defined(IVY_SHARED_FPENV)
    enum { FP = 0 };
#else
    enum { FP = 1 }; /* the words below the registers: mxcsr(4) fpucw(2) pad(2) */
#endif
    uint64_t *f = (uint64_t *)(void *)top - (7 + FP);
#if !defined(IVY_SHARED_FPENV)
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0; fnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
    f[0] = (uint64_t)mxcsr | (uint64_t)fpucw << 32;
#endif
    f[FP + 0] = f[FP + 1] = f[FP + 2] = f[FP + 3] = 0; /* r15 r14 r13 r12 */
    f[FP + 4] = (uint64_t)(uintptr_t)entry;            /* rbx */
    f[FP + 5] = 0;                                     /* rbp */
    f[FP + 6] = (uint64_t)(uintptr_t)ivy__ctx_start;   /* rip */
    return f;
#elif defined(__aarch64__)
#if defined(IVY_SHARED_FPENV)
    enum { WORDS = 20 };
#else
    enum { WORDS = 22 }; /* fpcr and a pad above the registers, keeping sp 16-byte aligned */
#endif
    uint64_t *f = (uint64_t *)(void *)top - WORDS;
    memset(f, 0, WORDS * sizeof *f);
    f[0] = (uint64_t)(uintptr_t)entry;           /* x19 */
    f[11] = (uint64_t)(uintptr_t)ivy__ctx_start; /* x30 */
#if !defined(IVY_SHARED_FPENV)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    f[20] = fpcr;
#endif
    return f;
#else
#error "ivy: no context switch for this architecture (x86-64 and aarch64 are supported)"
#endif
}

#endif
