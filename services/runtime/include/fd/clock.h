/* clock.h - the one clock every service reads.
 *
 * fd_now_ms / fd_now_s are the wall clock as this process believes it: the
 * system's CLOCK_REALTIME plus a test offset (FRONTDESK_TEST_CLOCK_OFFSET_MS,
 * a shared setting; 0 in production). Use them for every time compared with
 * another process's: token exp/nbf/iat, *_at fields, heartbeats' measured_at.
 * Tests shift one replica's clock with the setting to prove the skew rules
 * (an LD_PRELOAD clock does not mix with ASan).
 *
 * fd_mono_ms measures intervals (never offset, never goes back).
 * fd_real_ms is the system's own wall clock: for gRPC deadlines and condition
 * variable waits, which the system clock drives. */
#ifndef FD_CLOCK_H
#define FD_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t fd_now_ms(void);
int64_t fd_now_s(void);
int64_t fd_mono_ms(void);
int64_t fd_real_ms(void);

/* The CLOCK_REALTIME instant ms milliseconds from now (pthread_cond_timedwait). */
struct timespec fd_real_after(int64_t ms);

/* Sets the test offset (start-up; the shared main calls it from the
 * setting). Thread-safe. */
void fd_clock_set_offset_ms(int64_t ms);

#endif
