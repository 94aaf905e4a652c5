/* hooks.c - not built yet: answers 501. */
#include "http.h"

int hooks_handle(edge_req_t *r)
{
	return edge_reply_text(r, 501, "not built yet");
}
