/* state.c - not built yet. */
#include "state.h"

int state_start(edged_t *e, fd_err_t *err)
{
	(void)e; (void)err;
	return 0;
}

void state_stop(edged_t *e)
{
	(void)e;
}
