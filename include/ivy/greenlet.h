/*
 * Greenlets: stackful coroutines with the semantics of Python's greenlet.
 *
 * Every thread has an implicit main greenlet, the root of its tree, which never dies. A new
 * greenlet has a run function and a parent (by default the greenlet that created it); it starts
 * on the first switch into it, which calls run(value). When run returns, the greenlet is dead
 * and its parent's pending switch returns run's result. Switching to a dead greenlet, or a
 * greenlet dying whose parent is dead, goes to the nearest live ancestor.
 *
 * Values and errors, in one place:
 * - A value is a void *. A switch returns 0 and stores the value it was resumed with in *out
 *   (out may be NULL).
 * - An error is a negative int: a negative errno, or IVY_EXIT (greenlet's GreenletExit). A
 *   switch resumed by ivy_throw() returns that error and stores NULL in *out.
 * - run reports an error by returning ivy_err_ptr(err); the parent's pending switch then
 *   returns err. The exit error is special: a greenlet that dies of IVY_EXIT hands its parent a
 *   normal value, ivy_err_ptr(IVY_EXIT), with a switch result of 0.
 *   So `if (rc < 0) return ivy_err_ptr(rc);` propagates errors exactly as greenlet does.
 *
 * Every call returns 0 or a negative errno; greenlets belong to the thread that created them
 * and any call on another thread's greenlet fails with -EPERM.
 *
 * Floating-point control words. By default each greenlet keeps its own, as the ABIs make them
 * callee-saved (and as greenlet and Boost.Context do): the control bits of MXCSR (rounding, FTZ,
 * DAZ, exception masks) and the x87 control word (precision, rounding, masks) on x86-64, FPCR
 * (rounding, FZ, DN, AHP, trap enables) on aarch64. A switch saves the leaving greenlet's words
 * and restores the resumed one's; a new greenlet starts with its creator's words of the moment
 * it was created. The status flags (MXCSR's exception flags, the x87 status word, FPSR) are not
 * kept: they belong to the thread in either build.
 *
 * IVY_SHARED_FPENV, a build option of ivy (cmake -DIVY_SHARED_FPENV=ON, which defines the macro
 * for every target of the build), drops the control words from the switch, for programs that
 * never change rounding modes, flush-to-zero or exception masks once greenlets run. It makes a
 * switch about a third cheaper (README's performance table; bench/switch prints the figure of
 * the build it is part of). What a program gives up with it:
 * - The control words are one set per thread, shared by all its greenlets and green threads.
 *   A greenlet that calls fesetround, fesetenv, feenableexcept, _mm_setcsr or
 *   _MM_SET_FLUSH_ZERO_MODE (or a library that does so), then switches or blocks, leaves that
 *   mode in force in every greenlet that runs next, and finds on resuming whatever mode the
 *   last greenlet left. Only a change undone before the next switch (save, compute, restore,
 *   with no ivy call that may block in between) stays private.
 * - A new greenlet starts with the words in force when it first runs, not its creator's.
 * Everything else about a switch is the same in both builds.
 */
#ifndef IVY_GREENLET_H
#define IVY_GREENLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ivy_greenlet ivy_greenlet;
typedef void *(*ivy_run_fn)(void *arg);

/* greenlet.GreenletExit: kills the greenlet it is thrown into without being an error. */
#define IVY_EXIT (-4095)

/* Error pointers, as the Linux kernel's ERR_PTR: the top 4095 addresses are errors. */
static inline void *ivy_err_ptr(int err)
{
    return (void *)(intptr_t)err;
}
static inline int ivy_ptr_err(const void *p)
{
    return (uintptr_t)p >= (uintptr_t)-4095 ? (int)(intptr_t)p : 0;
}

/*
 * Creates a greenlet, not started. parent NULL means the current greenlet; stack_size 0 means
 * ivy_stack_default_size(). Returns NULL with errno set (EINVAL, EPERM, ENOMEM).
 */
ivy_greenlet *ivy_greenlet_new(ivy_run_fn run, ivy_greenlet *parent, size_t stack_size);

/*
 * Frees g. Its children are first re-parented to its parent, which is where a switch to them
 * would have gone after its death anyway. A suspended greenlet is then killed, as greenlet's
 * garbage collector does: its parent becomes the caller and IVY_EXIT is thrown into it (the
 * caller may be its descendant: that makes no cycle, its children having moved).
 * -EBUSY for the current greenlet, -EINVAL for a main greenlet, -EPERM for another thread's.
 */
int ivy_greenlet_free(ivy_greenlet *g);

/* Suspends the caller and resumes g with in; see the header comment for *out and the result. */
int ivy_switch(ivy_greenlet *g, void *in, void **out);

/*
 * Resumes g with the error err (< 0) instead of a value: g's pending switch returns err. A
 * greenlet that has not started (or is dead) is killed without running: err goes to its
 * parent as if run had returned it. Throwing into the current greenlet returns err at once.
 */
int ivy_throw(ivy_greenlet *g, int err, void **out);

/* The running greenlet of this thread (its main greenlet when none was switched to). */
ivy_greenlet *ivy_current(void);

ivy_greenlet *ivy_greenlet_parent(const ivy_greenlet *g); /* NULL for a main greenlet */
/* -EINVAL if it would make a cycle or g is a main greenlet; -EPERM across threads. */
int ivy_greenlet_set_parent(ivy_greenlet *g, ivy_greenlet *parent);

bool ivy_greenlet_started(const ivy_greenlet *g);
bool ivy_greenlet_active(const ivy_greenlet *g); /* started and not dead */
bool ivy_greenlet_dead(const ivy_greenlet *g);
bool ivy_greenlet_is_main(const ivy_greenlet *g);

/* A name for logs and crash reports; the string is not copied. */
void ivy_greenlet_set_name(ivy_greenlet *g, const char *name);
const char *ivy_greenlet_name(const ivy_greenlet *g);
size_t ivy_greenlet_stack_size(const ivy_greenlet *g);

/*
 * Stacks are mmap'ed with a guard page below them and recycled per thread; only the pages a
 * greenlet touches cost memory (one page for a greenlet that has barely run). The default size
 * is 128 KiB (512 KiB under AddressSanitizer). From Linux 6.13 on, guard pages are page-table
 * markers (MADV_GUARD_INSTALL) and cost no kernel mapping. On older kernels each costs one, and
 * vm.max_map_count (65530 by default) caps mappings: past about 30,000 guarded stacks ivy says so
 * once on stderr, names the sysctl to raise, and hands out stacks without guard pages rather
 * than failing.
 */
size_t ivy_stack_default_size(void);
int ivy_stack_set_default_size(size_t size); /* -EINVAL below 16 KiB */

#ifdef __cplusplus
}
#endif
#endif
