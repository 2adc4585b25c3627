/*
 * Context switch for x86-64 (System V).
 *
 *   int ivy__ctx_switch(void **save_sp, void *new_sp, int err)
 *
 * Saves the callee-saved registers (rbx, rbp, r12-r15), and by default MXCSR and the x87
 * control word, on the current stack, stores the stack pointer in *save_sp, and resumes the
 * context saved at new_sp, whose own ivy__ctx_switch call then returns err.
 *
 * It ends with pop + indirect jmp rather than ret. Callers tail-call it (greenlet.c), so the
 * address it resumes is the resumed greenlet's own call site, never the one the return-stack
 * predictor holds: a ret would miss on every switch, while the indirect-branch predictor learns
 * the targets.
 *
 * The control words. The System V ABI makes the control bits of MXCSR and of the x87 control
 * word callee-saved, so by default each greenlet keeps its own, as greenlet and Boost.Context
 * do. They are the dear part: on AMD Zen 5, stmxcsr alone measured 2 ns per switch, 4 when its
 * result was compared straight away, against 3.5 ns for the rest of the switch. So the resumed
 * context's words are loaded first, the registers restored, and only then compared with the
 * words just saved, whose stores have had time to complete; ldmxcsr/fldcw (microcoded and slow)
 * run only when they differ, which is nearly never. Each load of our words has the size of its
 * store (stmxcsr 4 bytes, fnstcw 2): one wider load spanning both would wait for them to retire.
 * Built with IVY_SHARED_FPENV (CMake option of that name; see include/ivy/greenlet.h) the words
 * are neither saved nor compared: every greenlet of the thread shares one FP environment.
 *
 * Frame at new_sp, low to high: [mxcsr(4) fpucw(2) pad(2)], r15, r14, r13, r12, rbx, rbp, rip
 * (the bracketed word only without IVY_SHARED_FPENV; context.h builds the same frame).
 * A fresh context has rip = ivy__ctx_start and rbx = the entry function.
 */
    .text
    .globl  ivy__ctx_switch
    .hidden ivy__ctx_switch
    .type   ivy__ctx_switch, @function
    .p2align 4
ivy__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
#if !defined(IVY_SHARED_FPENV)
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, %r10          /* our saved words */
#endif
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
#if !defined(IVY_SHARED_FPENV)
    movl    (%rsp), %r8d        /* theirs */
    movzwl  4(%rsp), %r9d
    addq    $8, %rsp
#endif
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    popq    %rcx
    movl    %edx, %eax
#if !defined(IVY_SHARED_FPENV)
    cmpl    (%r10), %r8d
    jne     1f
    cmpw    4(%r10), %r9w
    jne     1f
#endif
    jmpq    *%rcx
#if !defined(IVY_SHARED_FPENV)
    /* Theirs are still 64 bytes below rsp, inside the red zone that signal handlers spare:
       ldmxcsr and fldcw take memory operands only. */
1:  ldmxcsr -64(%rsp)
    fldcw   -60(%rsp)
    jmpq    *%rcx
#endif
    .cfi_endproc
    .size   ivy__ctx_switch, .-ivy__ctx_switch

/* First instruction of a fresh context: rsp is 16-byte aligned here; call the entry in rbx. */
    .globl  ivy__ctx_start
    .hidden ivy__ctx_start
    .type   ivy__ctx_start, @function
    .p2align 4
ivy__ctx_start:
    .cfi_startproc
    .cfi_undefined rip
    xorl    %ebp, %ebp
    callq   *%rbx
    ud2
    .cfi_endproc
    .size   ivy__ctx_start, .-ivy__ctx_start

    .section .note.GNU-stack,"",@progbits
