/*
 * Context switch for aarch64 (AAPCS64).
 *
 *   int ivy__ctx_switch(void **save_sp, void *new_sp, int err)
 *
 * Saves x19-x30 and d8-d15 in a 160-byte frame on the current stack, stores sp in *save_sp and
 * resumes the frame at new_sp, whose own ivy__ctx_switch call then returns err. A fresh
 * context (see context.h) has x30 = ivy__ctx_start and x19 = the entry function.
 */
    .text
    .globl  ivy__ctx_switch
    .hidden ivy__ctx_switch
    .type   ivy__ctx_switch, %function
    .p2align 4
ivy__ctx_switch:
    sub     sp, sp, #160
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
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
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
    add     sp, sp, #160
    mov     w0, w2
    ret
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
