/* handoff.c - not built yet: answers 501. */
#include "http.h"

int handoff_live(edge_req_t *r)
{
	return edge_reply_text(r, 501, "not built yet");
}
