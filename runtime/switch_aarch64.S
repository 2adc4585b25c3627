/*
 * Context switch for aarch64 (AAPCS64).
 *
 *   int ivy__ctx_switch(void **save_sp, void *new_sp, int err)
 *
 * Saves x19-x30, d8-d15 and by default FPCR in a frame on the current stack, stores sp in
 * *save_sp and resumes the frame at new_sp, whose own ivy__ctx_switch call then returns err.
 *
 * FPCR is x86-64's MXCSR question, decided the same way. AAPCS64 makes its mode bits (rounding,
 * flush-to-zero, exception trap enables) callee-saved, so by default each greenlet keeps its
 * own: the switch reads ours (mrs, into a register), loads theirs with the other registers and
 * writes FPCR only when the two differ, which is nearly never: msr fpcr is the dear part, a
 * write that many cores do not rename and serialise on. (Boost.Context's arm64 jump_fcontext
 * keeps no FPCR at all.)
 * FPSR, the cumulative exception flags, is caller-saved and not kept, as x86-64's flag bits
 * are not. Built with IVY_SHARED_FPENV (see include/ivy/greenlet.h) FPCR is neither read nor
 * written: every greenlet of the thread shares it.
 *
 * Frame at new_sp, low to high: x19-x30 (96 bytes), d8-d15 (64), [fpcr(8), pad(8)]; the
 * bracketed words only without IVY_SHARED_FPENV, so the frame is 176 or 160 bytes and sp stays
 * 16-byte aligned. A fresh context (see context.h) has x30 = ivy__ctx_start and x19 = the
 * entry function.
 */
#if defined(IVY_SHARED_FPENV)
#define FRAME 160
#else
#define FRAME 176
#endif

    .text
    .globl  ivy__ctx_switch
    .hidden ivy__ctx_switch
    .type   ivy__ctx_switch, %function
    .p2align 4
ivy__ctx_switch:
    sub     sp, sp, #FRAME
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
#if !defined(IVY_SHARED_FPENV)
    mrs     x10, fpcr           /* ours, kept in x10 for the compare */
    str     x10, [sp, #160]
#endif
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
#if !defined(IVY_SHARED_FPENV)
    ldr     x11, [sp, #160]     /* theirs */
#endif
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #FRAME
    mov     w0, w2
#if !defined(IVY_SHARED_FPENV)
    cmp     x10, x11
    b.ne    1f
#endif
    ret
#if !defined(IVY_SHARED_FPENV)
1:  msr     fpcr, x11
    ret
#endif
    .size   ivy__ctx_switch, .-ivy__ctx_switch

    .globl  ivy__ctx_start
    .hidden ivy__ctx_start
    .type   ivy__ctx_start, %function
    .p2align 4
ivy__ctx_start:
    mov     x29, #0
    mov     x30, #0
    blr     x19
    brk     #0
    .size   ivy__ctx_start, .-ivy__ctx_start

    .section .note.GNU-stack,"",%progbits
