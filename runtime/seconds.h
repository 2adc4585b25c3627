/*
 * Seconds (a double, as every public call takes them) to nanoseconds: the one conversion that
 * every timer, deadline and watchdog goes through.
 *
 * A bare (uint64_t)(s * 1e9) is undefined past 2^64 ns (584 years) and in practice wraps: 1e20 s
 * came out as a deadline in the past. Here a long time saturates at IVY_NS_FOREVER (2^62 ns, 146
 * years): far enough to never come, and small enough that adding it to any CLOCK_MONOTONIC
 * reading (time since boot) cannot wrap a uint64_t. NaN has no meaning as a duration: the public
 * calls refuse it with -EINVAL (and negative values where they mean nothing) before converting;
 * here it reads as 0.
 */
#ifndef IVY_SECONDS_H
#define IVY_SECONDS_H

#include <stdint.h>

#define IVY_NS_FOREVER (UINT64_C(1) << 62)

/* NaN or <= 0: 0; past 2^62 ns: IVY_NS_FOREVER; else the nanoseconds, truncated. */
static inline uint64_t ivy__seconds_ns(double seconds)
{
    if (!(seconds > 0)) return 0; /* also NaN */
    if (seconds >= (double)IVY_NS_FOREVER / 1e9) return IVY_NS_FOREVER;
    uint64_t ns = (uint64_t)(seconds * 1e9);
    return ns < IVY_NS_FOREVER ? ns : IVY_NS_FOREVER;
}

/* The CLOCK_MONOTONIC time, in ns, that is `seconds` after `now`; saturating, never wrapping. */
static inline uint64_t ivy__deadline_after(uint64_t now, double seconds)
{
    return now + ivy__seconds_ns(seconds);
}

#endif
