/* clock.c - the one clock (fd/clock.h). */
#include <stdatomic.h>
#include "fd/clock.h"

static _Atomic int64_t offset_ms;

static int64_t read_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fd_real_ms(void)
{
	return read_ms(CLOCK_REALTIME);
}

int64_t fd_now_ms(void)
{
	return read_ms(CLOCK_REALTIME) + atomic_load_explicit(&offset_ms, memory_order_relaxed);
}

int64_t fd_now_s(void)
{
	int64_t ms = fd_now_ms();
	return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

int64_t fd_mono_ms(void)
{
	return read_ms(CLOCK_MONOTONIC);
}

struct timespec fd_real_after(int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

void fd_clock_set_offset_ms(int64_t ms)
{
	atomic_store(&offset_ms, ms);
}
